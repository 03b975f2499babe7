"""ImageNet initialisation of the detector's body: a ResNet / ResNeXt classification
checkpoint (or the body of a detector checkpoint) loaded into ``model.backbone.body``.

Accepted checkpoints, each a body family of :mod:`fasterrcnn.zoo.key_maps` translated to the
classic ResNet names of :mod:`fasterrcnn.modeling.backbone` (``conv1``, ``bn1``,
``layerK.B.convJ``, ``layerK.B.bnJ``, ``layerK.B.downsample.0/1``) by the loaders' one
conversion, :func:`~fasterrcnn.zoo.checkpoints.convert_state_dict`:

- a PyTorch classifier (torchvision's ``resnet50-*.pth``: tensors, ``fc.*`` and batch-norm
  ``num_batches_tracked`` counters), zip or legacy ``torch.save`` format, or safetensors;
- a MegEngine classifier (a pickled dict of numpy arrays, maybe under ``"state_dict"``, with
  batch-norm tensors shaped ``(1, C, 1, 1)`` and grouped kernels 5-D);
- a whole detector checkpoint: the keys under ``backbone.body.`` (this library's or
  torchvision's) or ``backbone.bottom_up.`` (MegEngine's) are the body, the rest is ignored;
- any of them saved from ``DataParallel`` (every key under ``module.``).

The classifier (``fc.*``) and the batch-norm counters are dropped; every other body tensor
must be filled, with the shape the body has (after MegEngine's layouts are reshaped), with
finite floating-point values. Anything else is a one-line
:class:`~fasterrcnn.zoo.checkpoint_files.CheckpointError`, and the body is then left as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fasterrcnn.modeling.backbone import ResNet
from fasterrcnn.zoo.architectures import describe_body
from fasterrcnn.zoo.checkpoint_files import CheckpointError, naming_file, read_state_dict
from fasterrcnn.zoo.checkpoints import (
    KeyMismatch,
    convert_state_dict,
    first_keys,
    translated_shapes,
    unwrap,
)
from fasterrcnn.zoo.key_maps import BODY_KEY_MAPS, DATA_PARALLEL, BodyFamily


@dataclass(frozen=True)
class BodyLoadReport:
    """What :func:`load_body_weights` loaded, for the training log.

    ``source``: the file, or ``"state dict"``; ``checkpoint_format``: the format recognised;
    ``architecture``: the body the checkpoint holds (e.g. ``"ResNet-50 (bottleneck
    blocks)"``); ``tensors_loaded``: body tensors filled; ``dropped``: checkpoint keys left
    out on purpose (the classifier ``fc.*`` and batch-norm counters); ``outside_body``: keys
    of a detector checkpoint outside its body (FPN, heads), ignored.
    """

    source: str
    checkpoint_format: str
    architecture: str
    tensors_loaded: int
    dropped: tuple[str, ...]
    outside_body: int = 0

    def line(self) -> str:
        """One line for a training log."""
        classifier = [k for k in self.dropped if k in ("fc.weight", "fc.bias")]
        counters = len(self.dropped) - len(classifier)
        parts = [
            f"body initialised from {self.source}: {self.checkpoint_format}, "
            f"{self.architecture}, {self.tensors_loaded} tensors loaded"
        ]
        if classifier:
            parts.append(f"classifier dropped ({', '.join(classifier)})")
        if counters:
            parts.append(f"{counters} batch-norm counters dropped")
        if self.outside_body:
            parts.append(f"{self.outside_body} detector keys outside the body ignored")
        return "; ".join(parts)


def load_body_weights(body: nn.Module, weights: str | Path | Mapping[str, Any]) -> BodyLoadReport:
    """Load an ImageNet ResNet / ResNeXt checkpoint (a file, or a state dict of tensors or
    numpy arrays) into ``body``, the detector's :class:`~fasterrcnn.modeling.backbone.ResNet`
    (``model.backbone.body``).

    Strict: every body parameter and buffer except batch-norm counters is filled, shapes
    agree, and nothing but the classifier and counters is left over; otherwise a one-line
    :class:`~fasterrcnn.zoo.checkpoint_files.CheckpointError` (prefixed with the file name)
    and ``body`` is unchanged. Gradient flags, modes and devices of ``body`` are kept.
    """
    if not isinstance(body, ResNet):
        raise TypeError(
            "load_body_weights: body must be the detector's ResNet body (model.backbone.body), "
            f"not {type(body).__name__}"
        )
    if isinstance(weights, (str, Path)):
        with naming_file(weights):
            return _load(body, read_state_dict(weights), str(weights))
    if not isinstance(weights, Mapping):
        raise TypeError(
            "load_body_weights: weights must be a file path or a state dict, "
            f"not {type(weights).__name__}"
        )
    return _load(body, weights, "state dict")


def _load(body: ResNet, checkpoint: Any, source: str) -> BodyLoadReport:
    state = unwrap(checkpoint)
    if not state:
        raise CheckpointError("checkpoint holds no tensors")
    family = _body_family(state)
    what = "ImageNet checkpoint" if family.endswith("classifier") else "detector checkpoint"
    key_map = BODY_KEY_MAPS[family]
    if all(key.startswith(DATA_PARALLEL) for key in state):
        key_map = key_map.under(DATA_PARALLEL, ", DataParallel 'module.' prefix stripped")

    target = body.state_dict()
    shapes = translated_shapes(state, key_map)
    found = describe_body(shapes)
    wanted = describe_body({k: tuple(v.shape) for k, v in target.items()})
    if found is None:
        raise CheckpointError(
            f"not a ResNet checkpoint: no key names a ResNet body tensor "
            f"(first keys: {first_keys(list(state))})"
        )
    if found != wanted:
        raise CheckpointError(f"{what} holds a {found} body, but the model's body is {wanted}")
    _check_norm(body, list(shapes))
    try:
        conversion = convert_state_dict(state, target, key_map, check=_check_values)
    except KeyMismatch as err:
        raise CheckpointError(f"{what} ({found}) does not fit the body: {err}") from None

    with torch.no_grad():
        for name, tensor in conversion.tensors.items():
            target[name].copy_(tensor)
    dropped = [k for k in conversion.dropped if k.startswith(key_map.prefix)]
    return BodyLoadReport(
        source=source,
        checkpoint_format=key_map.name,
        architecture=found,
        tensors_loaded=len(conversion.tensors),
        dropped=tuple(k[len(key_map.prefix) :] for k in dropped),
        outside_body=len(conversion.dropped) - len(dropped),
    )


def _body_family(state: Mapping[str, Any]) -> BodyFamily:
    """The body family of a checkpoint: a detector's if it has keys under a detector's body
    prefix (DataParallel's ``module.`` aside), else a PyTorch or MegEngine classifier."""
    keys = list(state)
    if all(key.startswith(DATA_PARALLEL) for key in keys):
        keys = [key[len(DATA_PARALLEL) :] for key in keys]
    detectors = [
        (family, key_map.prefix)
        for family, key_map in BODY_KEY_MAPS.items()
        if key_map.prefix and any(key.startswith(key_map.prefix) for key in keys)
    ]
    if len(detectors) > 1:
        prefixes = " and ".join(prefix for _, prefix in detectors)
        raise CheckpointError(f"checkpoint has keys under both {prefixes}")
    if detectors:
        return detectors[0][0]
    return "megengine_classifier" if _looks_like_megengine(state) else "torch_classifier"


def _looks_like_megengine(state: Mapping[str, Any]) -> bool:
    """Numpy arrays, or batch-norm statistics stored 4-D as MegEngine stores them."""
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            return True
        if key.endswith(("running_mean", "running_var")) and len(getattr(value, "shape", ())) == 4:
            return True
    return False


def _check_norm(body: ResNet, names: list[str]) -> None:
    """Refuse batch-norm statistics (``names``: the checkpoint's, in body names) for a body
    with group norm, which has none."""
    if not any(isinstance(m, nn.GroupNorm) for m in body.modules()):
        return
    statistics = [k for k in names if k.endswith(("running_mean", "running_var"))]
    if statistics:
        raise CheckpointError(
            f"checkpoint has batch-norm statistics ({statistics[0]}, ...); the model's body uses "
            "group norm, which has none: build it with body.norm 'frozen_bn' or 'bn'"
        )


def _check_values(key: str, tensor: torch.Tensor) -> None:
    """Refuse a body tensor that is not floating point or not finite."""
    if not tensor.is_floating_point():
        raise CheckpointError(f"{key} holds {tensor.dtype} values, not floating point")
    if not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(f"{key} holds non-finite values (NaN or infinity)")


__all__ = ["BodyLoadReport", "describe_body", "load_body_weights"]
