"""Loading checkpoints: the one conversion of a checkpoint's tensors to a target's names and
shapes (a detector's, or its ResNet body's), and detector loading.

Each family has one key map (:mod:`fasterrcnn.zoo.key_maps`). Loading is strict: every
checkpoint key must map to a target key, every target key must be filled, and shapes must
agree. Errors are :class:`CheckpointError` with one line. Files are read by
:mod:`fasterrcnn.zoo.checkpoint_files`, architectures described by
:mod:`fasterrcnn.zoo.architectures`; their public names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fasterrcnn.zoo.architectures import describe_architecture, describe_body
from fasterrcnn.zoo.checkpoint_files import (
    CheckpointError,
    naming_file,
    read_safetensors,
    read_safetensors_metadata,
    read_state_dict,
    safe_unpickle,
)
from fasterrcnn.zoo.key_maps import FAMILY_NAMES, KEY_MAPS, Family, KeyMap, detect_family

_ALIGNMENT = 64  # bytes; what PyTorch's CPU allocator guarantees


class KeyMismatch(CheckpointError):
    """A checkpoint whose keys or shapes do not fit its target (missing, unexpected or
    mismatched keys), named in one line."""


@dataclass(frozen=True)
class Conversion:
    """A checkpoint translated to a target: ``tensors`` by target name, in the target's
    shapes and dtypes; ``dropped``: the checkpoint keys its key map drops on purpose."""

    tensors: dict[str, torch.Tensor]
    dropped: tuple[str, ...]


def first_keys(keys: list[str], limit: int = 3) -> str:
    """The first ``limit`` of ``keys`` and how many more, for one-line messages."""
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def key_problems(
    missing: list[str], unexpected: list[str], mismatched: list[str], missing_noun: str
) -> list[str]:
    """One clause per kind of problem of a strict load (empty when there is none)."""
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} {missing_noun}: {first_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {first_keys(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {first_keys(mismatched, 2)}")
    return problems


def convert_state_dict(
    state_dict: Mapping[str, Any],
    target: nn.Module | Mapping[str, torch.Tensor],
    key_map: KeyMap | Family,
    *,
    check: Callable[[str, torch.Tensor], None] | None = None,
) -> Conversion:
    """Translate ``state_dict`` by ``key_map`` (or a detector family's) into the names and
    shapes of ``target`` (a module or its state dict), strictly.

    ``check`` sees each checkpoint key with its tensor in the target's shape (before the cast
    to the target's dtype) and may raise. Problems with keys or shapes raise one
    :class:`KeyMismatch` naming them all; batch-norm counters may be left unfilled.
    """
    if isinstance(key_map, str):
        key_map = KEY_MAPS[key_map]
    wanted = target.state_dict() if isinstance(target, nn.Module) else target
    converted: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unexpected: list[str] = []
    mismatched: list[str] = []
    misfit: set[str] = set()
    for key, value in state_dict.items():
        try:
            name = key_map.translate(key)
        except KeyError:
            unexpected.append(key)
            continue
        if name is None:
            dropped.append(key)
            continue
        if name not in wanted:
            unexpected.append(key)
            continue
        tensor = _as_tensor(value, key)
        want = wanted[name]
        if tensor.shape != want.shape:
            viewed = key_map.layout(tensor, want.shape) if key_map.layout else None
            if viewed is None:
                mismatched.append(f"{key} {tuple(tensor.shape)} vs {tuple(want.shape)}")
                misfit.add(name)
                continue
            tensor = viewed
        if check is not None:
            check(key, tensor)
        converted[name] = tensor.to(want.dtype)
    missing = [
        k
        for k in wanted
        if k not in converted and k not in misfit and not k.endswith("num_batches_tracked")
    ]
    problems = key_problems(missing, unexpected, mismatched, key_map.missing_noun)
    if problems:
        raise KeyMismatch("; ".join(problems))
    return Conversion(converted, tuple(dropped))


def _as_tensor(value: Any, key: str) -> torch.Tensor:
    """A checkpoint value as a tensor (a numpy array's shares its memory when contiguous)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (int, float)):
        return torch.tensor(value)
    raise CheckpointError(f"{key}: not an array but {type(value).__name__}")


def translated_shapes(state_dict: Mapping[str, Any], key_map: KeyMap) -> dict[str, tuple]:
    """The shapes (as stored) of the checkpoint tensors ``key_map`` translates, by the
    target's names: what the describers read."""
    shapes = {}
    for key, value in state_dict.items():
        try:
            name = key_map.translate(key)
        except KeyError:
            continue
        if name is not None:
            shapes[name] = tuple(getattr(value, "shape", ()))
    return shapes


def load_into(
    model: nn.Module,
    weights: str | Path | Mapping[str, Any],
    expected: Family,
    *,
    own: bool = False,
) -> None:
    """Load ``weights`` (a file or a state dict) of family ``expected`` into ``model``, which
    may have been built on the meta device.

    A native (``model.state_dict()``) checkpoint is accepted for any preset. Nothing is
    loaded when anything is wrong. The model copies a state dict's tensors unless they are
    its ``own`` (nobody else holds them); a file's tensors are always its own.
    """
    if isinstance(weights, (str, Path)):
        with naming_file(weights):
            _load_checked(model, unwrap(read_state_dict(weights)), expected, own=True)
    else:
        _load_checked(model, unwrap(weights), expected, own=own)


def _load_checked(
    model: nn.Module, state_dict: Mapping[str, Any], expected: Family, own: bool
) -> None:
    """Load strictly; the model takes the tensors themselves when they are its ``own`` (just
    read from a file), else copies (never aliasing a caller's tensors)."""
    family = detect_family(state_dict)
    if family is None:
        raise CheckpointError(
            f"not a Faster R-CNN checkpoint of a known family (expected {FAMILY_NAMES[expected]}"
            f" names; first keys: {first_keys(list(state_dict), 3)})"
        )
    if family not in (expected, "native"):
        raise CheckpointError(
            f"this looks like a {FAMILY_NAMES[family]} checkpoint, but the model expects "
            f"{FAMILY_NAMES[expected]} names"
        )
    try:
        converted = convert_state_dict(state_dict, model, family).tensors
    except CheckpointError as err:
        found = describe_architecture(translated_shapes(state_dict, KEY_MAPS[family]))
        wanted = describe_architecture({k: tuple(v.shape) for k, v in model.state_dict().items()})
        raise CheckpointError(
            f"{FAMILY_NAMES[family]} checkpoint of another architecture ({found}) than the "
            f"model ({wanted}): {err}"
        ) from None
    # Copies are PyTorch's own allocations, aligned for its kernels (arrays unpickled by numpy
    # are not: convolutions over them ran 5-8% slower).
    converted = {
        k: v if own and v.data_ptr() % _ALIGNMENT == 0 else v.clone() for k, v in converted.items()
    }
    # Strictness was checked above; only batch-norm counters may be absent. The tensors are
    # assigned, so a model built on the meta device gets its memory here.
    model.load_state_dict(converted, strict=False, assign=True)
    materialize(model)


def materialize(model: nn.Module) -> None:
    """Give the tensors a checkpoint does not hold real memory, if the model was built on the
    meta device: batch-norm counters (zero) and buffers a module computes itself."""
    device = next((t.device for t in model.state_dict().values() if not t.is_meta), "cpu")
    for module in model.modules():
        pending = [n for n, b in module.named_buffers(recurse=False) if b is not None and b.is_meta]
        if not pending:
            continue
        reset = getattr(module, "reset_buffers", None)
        if callable(reset):
            reset(device)
        for name in pending:
            if name == "num_batches_tracked":
                module.register_buffer(name, torch.zeros((), dtype=torch.int64, device=device))
        left = [n for n, b in module.named_buffers(recurse=False) if b is not None and b.is_meta]
        if left:
            raise RuntimeError(f"{type(module).__name__}: buffers {left} have no values")


def unwrap(obj: Any) -> Mapping[str, Any]:
    """The flat state dict inside a checkpoint: itself, or under "state_dict" / "model"."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, not a dict of tensors")
    for wrapper in ("state_dict", "model"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping) and wrapper in obj and detect_family(obj) is None:
            return unwrap(inner)
    if not all(isinstance(k, str) for k in obj):
        raise CheckpointError("checkpoint dict has non-string keys")
    return obj


__all__ = [
    "FAMILY_NAMES",
    "KEY_MAPS",
    "CheckpointError",
    "Conversion",
    "Family",
    "KeyMap",
    "KeyMismatch",
    "convert_state_dict",
    "describe_architecture",
    "describe_body",
    "detect_family",
    "first_keys",
    "key_problems",
    "load_into",
    "materialize",
    "naming_file",
    "read_safetensors",
    "read_safetensors_metadata",
    "read_state_dict",
    "safe_unpickle",
    "translated_shapes",
    "unwrap",
]
