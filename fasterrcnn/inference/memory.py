"""How the process's allocator keeps the memory of freed feature maps between batches.

A forward pass at the 800 setting allocates about 1.6 GB of feature maps (the largest, a
256-channel map at stride 4, is 62 MB) and frees them again. Memory that the allocator hands
back to the operating system costs a page fault per 4 KiB page when it is taken again: with
glibc's defaults, about 400,000 faults and 0.8 s of kernel time per image on 2 cores, which
made the R50 at 800 x 1216 spend a quarter of its time in the kernel.

Two policies, chosen with ``FASTERRCNN_MEMORY`` (read once per process):

- ``fast`` (the default): every block comes from glibc's heap and stays there when freed, so
  the next image reuses it without faults; after a batch, the free heap pages are returned
  only when more than :data:`FREE_MEMORY_KEPT` (1.5 GiB) of them has piled up (images of many
  sizes fragment the heap; one image at the 800 setting leaves 0.5-1.1 GB free). Over 33
  mini COCO images on 2 cores: 1.17 s/image, 6,400 faults per image and a 1.69 GB peak,
  against 1.55 s, 274,000 faults and 0.90 GB for ``low``.
- ``low``: every block of 4 MiB or more is its own mapping, returned whole when freed, and
  the free heap pages are returned after every batch, so the peak stays that of the largest
  batch (0.97 GB above) at the price of faulting every feature map in again.

Without glibc (musl, macOS, Windows) both are no-ops.

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
from typing import Literal

MemoryPolicy = Literal["fast", "low"]
MEMORY_ENV = "FASTERRCNN_MEMORY"
FREE_MEMORY_KEPT = 3 << 29  # bytes of free heap (1.5 GiB) the fast policy keeps between batches


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


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
_MALLINFO2: Callable[[], _MallInfo2] | None = getattr(_LIBC, "mallinfo2", None)
if _MALLINFO2 is not None:
    _MALLINFO2.restype = _MallInfo2  # type: ignore[attr-defined]
# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_MAPPED_FROM = 4 << 20
_NEVER = 2**31 - 1
_policy: MemoryPolicy | None = None


def memory_policy() -> MemoryPolicy:
    """``FASTERRCNN_MEMORY``: ``fast`` (default) or ``low``; anything else is a one-line
    ValueError."""
    value = os.environ.get(MEMORY_ENV, "fast").strip().lower() or "fast"
    if value not in ("fast", "low"):
        raise ValueError(f"{MEMORY_ENV} must be 'fast' or 'low', not {value!r}")
    return value  # type: ignore[return-value]


def prepare_allocator() -> MemoryPolicy | None:
    """Set glibc's allocator up for :func:`memory_policy`, once per process; the policy set,
    or None without glibc."""
    global _policy
    if _policy is None and _MALLOPT is not None:
        policy = memory_policy()
        if policy == "fast":
            ok = _MALLOPT(_M_MMAP_MAX, 0) and _MALLOPT(_M_TRIM_THRESHOLD, _NEVER)
        else:
            ok = _MALLOPT(_M_MMAP_THRESHOLD, _MAPPED_FROM)
        _policy = policy if ok else None
    return _policy


def free_heap_bytes() -> int | None:
    """Bytes of free memory glibc's heap holds (``mallinfo2``), None without glibc."""
    return None if _MALLINFO2 is None else int(_MALLINFO2().fordblks)


def release_free_memory(keep: int | None = None) -> bool:
    """Return the allocator's free heap pages to the OS if more than ``keep`` bytes of them
    are free (default: :data:`FREE_MEMORY_KEPT` under the fast policy, 0 under the low one);
    whether they were returned."""
    if _TRIM is None:
        return False
    if keep is None:
        keep = FREE_MEMORY_KEPT if (_policy or memory_policy()) == "fast" else 0
    if keep > 0:
        free = free_heap_bytes()
        if free is not None and free <= keep:
            return False
    _TRIM(0)
    return True


KERNEL_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
KERNEL_CACHE_CAPACITY = 128


def limit_kernel_cache() -> None:
    """Cap oneDNN's kernel cache at :data:`KERNEL_CACHE_CAPACITY` entries unless the user set
    ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``; effective only before the first convolution."""
    os.environ.setdefault(KERNEL_CACHE_ENV, str(KERNEL_CACHE_CAPACITY))
