"""Checkpoint files read into state dicts: ``torch.save`` files (zip or legacy format, weights
only), pickled dicts of numpy arrays (through a restricted unpickler that never runs code) and
safetensors files; and :class:`CheckpointError`, the one-line error of every checkpoint loader,
with :func:`naming_file`, the one way such an error names its file.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

# A legacy (pre-zip) ``torch.save`` file opens with its magic number pickled as a protocol-2
# LONG1 of 10 bytes.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into a model; the message is one line."""


@contextmanager
def naming_file(path: str | Path) -> Iterator[None]:
    """A context in which a :class:`CheckpointError` gets ``"{path}: "`` in front of its
    message (once: a message that starts with it already is left as it is)."""
    try:
        yield
    except CheckpointError as err:
        message = str(err)
        prefix = f"{path}: "
        raise CheckpointError(message if message.startswith(prefix) else prefix + message) from None


def _reason(err: Exception) -> str:
    """The first line of an exception's message, or its type's name if it has none."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def read_state_dict(path: str | Path) -> Mapping[str, Any]:
    """Read a ``.pth``/``.pt`` (torch, weights only; zip or legacy format), safetensors or
    pickle file.

    A safetensors file is recognised by its ``.safetensors`` suffix or by its header, a
    legacy ``torch.save`` file by its magic number.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    with path.open("rb") as file:
        head = file.read(len(_LEGACY_TORCH_MAGIC))
    if path.suffix == ".safetensors" or _looks_like_safetensors(head[:9], path.stat().st_size):
        return read_safetensors(path)[0]
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"{path}: empty file")
    try:
        if zipfile.is_zipfile(io.BytesIO(data)) or head == _LEGACY_TORCH_MAGIC:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return safe_unpickle(data)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    except Exception as err:
        raise CheckpointError(f"{path}: not a checkpoint file ({_reason(err)})") from None


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes starting with ``head`` (its first 9 bytes) opens like
    a safetensors file: an 8-byte little-endian header length that fits, then ``{``."""
    return len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") < size - 8


def _open_safetensors(path: Path) -> Any:
    """``safetensors.safe_open`` on ``path``; a missing, empty or malformed file (including a
    truncated one: the header must cover the whole file) is a one-line CheckpointError."""
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as err:
        raise CheckpointError(f"{path}: not a safetensors file ({_reason(err)})") from None


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata in a safetensors file's header ({} if it has none), without
    reading its tensors."""
    with _open_safetensors(Path(path)) as file:
        return dict(file.metadata() or {})


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors (on the CPU, in the file's order) and its metadata."""
    path = Path(path)
    with _open_safetensors(path) as file:
        try:
            tensors = {key: file.get_tensor(key) for key in file.keys()}
        except Exception as err:
            raise CheckpointError(f"{path}: unreadable tensor data ({_reason(err)})") from None
        return tensors, dict(file.metadata() or {})


# Globals a pickled dict of numpy arrays may reference, under numpy 1.x and 2.x names (both
# resolve to the installed numpy's functions).
_NUMPY2 = int(np.__version__.split(".")[0]) >= 2
_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
}
_multiarray = importlib.import_module(
    "numpy._core.multiarray" if _NUMPY2 else "numpy.core.multiarray"
)
_numeric = importlib.import_module("numpy._core.numeric" if _NUMPY2 else "numpy.core.numeric")
for _prefix in ("numpy.core", "numpy._core"):
    _NUMPY_GLOBALS[(f"{_prefix}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _NUMPY_GLOBALS[(f"{_prefix}.multiarray", "scalar")] = _multiarray.scalar
    _NUMPY_GLOBALS[(f"{_prefix}.numeric", "_frombuffer")] = _numeric._frombuffer
# Protocol-2 pickles written by Python 3 encode byte strings through this pure function.
_NUMPY_GLOBALS[("_codecs", "encode")] = codecs.encode


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only numpy arrays, dtypes, scalars and plain containers."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _NUMPY_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(f"refused to unpickle forbidden global {module}.{name}") from None


def safe_unpickle(data: bytes) -> Any:
    """Unpickle ``data`` admitting only numpy arrays and plain containers (never code)."""
    try:
        return _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"not a checkpoint file ({_reason(err)})") from None
