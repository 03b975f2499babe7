"""The project's own checkpoint format: one safetensors file that also holds its model.

The tensors are the model's own state dict (the "native" family of
:mod:`fasterrcnn.zoo.checkpoints`: ``model.state_dict()`` names, contiguous, on the CPU). The
file's string metadata holds:

- ``format``: ``"fasterrcnn"``; ``format_version``: ``"1"``;
- ``config``: the :class:`~fasterrcnn.config.ModelConfig` as JSON
  (:func:`~fasterrcnn.config_json.config_to_dict`), class table included, so the file alone
  rebuilds its model;
- ``preset``: the preset it was derived from, or ``""``;
- any extra string entries of the writer (e.g. the training iteration).

A safetensors file without this metadata is a plain state dict: it loads into a named preset,
but it cannot build a model by itself.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn

from fasterrcnn.config import ModelConfig
from fasterrcnn.config_json import ConfigError, config_from_json, config_to_json
from fasterrcnn.modeling.faster_rcnn import FasterRCNN
from fasterrcnn.zoo.checkpoint_files import (
    CheckpointError,
    read_safetensors,
    read_safetensors_metadata,
)
from fasterrcnn.zoo.checkpoints import convert_state_dict, describe_architecture

FORMAT = "fasterrcnn"
FORMAT_VERSION = "1"
RESERVED_KEYS = ("format", "format_version", "config", "preset")


@dataclass
class NativeCheckpoint:
    """A native checkpoint in memory.

    ``config``: the model's configuration; ``state_dict``: its tensors by
    ``model.state_dict()`` name; ``preset``: the preset it was derived from, or None;
    ``metadata``: the writer's extra string entries (not the reserved ones).
    """

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    preset: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def save_native(
    path: str | Path,
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    config: ModelConfig,
    *,
    preset: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a native checkpoint of a model (or its state dict) built from ``config``.

    The state dict must be exactly that of ``FasterRCNN(config)`` (names and shapes; batch norm
    counters may be absent), else :class:`CheckpointError`. ``metadata`` adds string entries
    (their keys may not be ``format``, ``format_version``, ``config`` or ``preset``). The file
    is written to a temporary name in the same folder and renamed over ``path`` at the end:
    if anything fails, ``path`` is untouched and no temporary file is left.
    """
    path = Path(path)
    extra = _check_metadata(metadata)
    if isinstance(model_or_state_dict, nn.Module):
        state_dict: Mapping[str, Any] = model_or_state_dict.state_dict()
    elif isinstance(model_or_state_dict, Mapping):
        state_dict = model_or_state_dict
    else:
        raise TypeError(
            f"save_native: expected a model or a state dict, got {type(model_or_state_dict)}"
        )
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config_to_json(config),
        "preset": preset or "",
        **extra,
    }
    _check_fits(state_dict, config)
    tensors = {
        key: _require_tensor(value, key).detach().to("cpu").contiguous()
        for key, value in state_dict.items()
    }
    if path.is_dir():
        raise IsADirectoryError(f"save_native: {path} is a directory")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"save_native: no such directory {path.parent}")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _write_safetensors(tensors, temporary, header, path)
        with temporary.open("rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_safetensors(
    tensors: dict[str, torch.Tensor], temporary: Path, metadata: dict[str, str], path: Path
) -> None:
    """Write the file under the name ``temporary``; failures are OSErrors naming ``path``."""
    try:
        save_file(tensors, str(temporary), metadata=metadata)
    except SafetensorError as err:  # how safetensors reports I/O failures
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise OSError(f"save_native: cannot write {path} ({reason})") from err


def read_native(path: str | Path) -> NativeCheckpoint:
    """Read a native checkpoint; anything else is a one-line :class:`CheckpointError`
    (a missing, corrupt or truncated file, a safetensors file without fasterrcnn metadata,
    a newer format version, a bad configuration)."""
    path = Path(path)
    header = read_safetensors_metadata(path)
    _check_header(header, path)
    try:
        config = config_from_json(header["config"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: bad model configuration: {err}") from None
    tensors, _ = read_safetensors(path)
    return NativeCheckpoint(
        config=config,
        state_dict=tensors,
        preset=header.get("preset") or None,
        metadata={k: v for k, v in header.items() if k not in RESERVED_KEYS},
    )


def is_native(path: str | Path) -> bool:
    """Whether ``path`` is a readable safetensors file with fasterrcnn metadata (any version).

    Only the file's header is read.
    """
    try:
        return read_safetensors_metadata(path).get("format") == FORMAT
    except CheckpointError:
        return False


def _check_header(header: Mapping[str, str], path: Path) -> None:
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: has no fasterrcnn metadata (a plain state dict, not a native checkpoint); "
            "name the preset it was made for"
        )
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: fasterrcnn checkpoint format version {version!r}; this version of "
            f"fasterrcnn reads version {FORMAT_VERSION!r}"
        )
    if "config" not in header:
        raise CheckpointError(f"{path}: fasterrcnn metadata without a model configuration")


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    extra = dict(metadata or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"save_native: metadata must map strings to strings, got {key!r}: {value!r}"
            )
        if key in RESERVED_KEYS:
            raise ValueError(f"save_native: metadata key {key!r} is reserved for the format")
    return extra


def _require_tensor(value: Any, key: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{key}: not a tensor but {type(value).__name__}")
    return value


def _check_fits(state_dict: Mapping[str, Any], config: ModelConfig) -> None:
    """A CheckpointError unless ``state_dict`` is exactly the state dict of ``config``'s model
    (checked against a parameter-free copy of the model on the meta device)."""
    skeleton = FasterRCNN.skeleton(config)
    try:
        convert_state_dict(state_dict, skeleton, "native")
    except CheckpointError as err:
        wanted = describe_architecture(
            {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
        )
        raise CheckpointError(
            f"save_native: the state dict does not fit the configuration ({wanted}): {err}"
        ) from None
