"""Giving freed heap memory back to the operating system between batches.

glibc's allocator keeps the memory of freed tensors in its heap for reuse. Images of varying
sizes leave that heap fragmented, so the resident memory of a long run creeps up (the R50 at
the 800 setting on the mini COCO set, one image at a time: 0.8 GB after 5 images, 1.5 GB after
60, 1.7 GB peak). ``malloc_trim(0)`` after each batch returns the free pages, so the peak stays
that of the largest image (about 1.2 GB there), at the price of faulting those pages in again
(about 3% of an image's time on a CPU).

glibc also raises its mmap threshold each time a large block is freed, so that later large
tensors come from the heap, where they fragment it. :func:`keep_large_blocks_mapped` fixes the
threshold at 4 MiB instead: every feature map is its own mapping, returned whole when freed
(with it, the peak of ``fasterrcnn detect`` over 320 images was 1.07 times its peak over 20;
without, the heap kept growing with the number of image sizes seen). Without glibc both are
no-ops.

oneDNN, which runs PyTorch's CPU convolutions, caches the kernels it generates per input
shape (1024 by default: about ten image sizes of this model). A run over images of many sizes
fills that cache (28 MB more resident memory after 120 images of 21 sizes than with the
cap below). :func:`limit_kernel_cache` keeps 128 (the last image size's, about one image's
worth), at no measurable cost in speed (1.580 against 1.572 s/image over 16 images of 8
sizes). ``fasterrcnn`` commands call it first thing: it only works before the process's
first convolution.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


# glibc's allocator controls; None without glibc (musl, macOS, Windows lack them).
_LIBC = _load_libc()
_TRIM: Callable[[int], int] | None = getattr(_LIBC, "malloc_trim", None)
_MALLOPT: Callable[[int, int], int] | None = getattr(_LIBC, "mallopt", None)
_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
_MAPPED_FROM = 4 << 20
_mapped = False


def release_free_memory() -> bool:
    """Return the allocator's free heap pages to the OS; whether it could be asked to."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


def keep_large_blocks_mapped() -> bool:
    """Allocate every block of 4 MiB or more as its own mapping (glibc ``mallopt``), once per
    process; whether it could be asked to."""
    global _mapped
    if not _mapped and _MALLOPT is not None:
        _mapped = bool(_MALLOPT(_M_MMAP_THRESHOLD, _MAPPED_FROM))
    return _mapped


KERNEL_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
KERNEL_CACHE_CAPACITY = 128


def limit_kernel_cache() -> None:
    """Cap oneDNN's kernel cache at :data:`KERNEL_CACHE_CAPACITY` entries unless the user set
    ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``; effective only before the first convolution."""
    os.environ.setdefault(KERNEL_CACHE_ENV, str(KERNEL_CACHE_CAPACITY))
