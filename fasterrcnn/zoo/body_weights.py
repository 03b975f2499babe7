"""ImageNet initialisation of the detector's body: a ResNet / ResNeXt classification
checkpoint (or the body of a detector checkpoint) loaded into ``model.backbone.body``.

Accepted checkpoints, all in the classic ResNet names of :mod:`fasterrcnn.modeling.backbone`
(``conv1``, ``bn1``, ``layerK.B.convJ``, ``layerK.B.bnJ``, ``layerK.B.downsample.0/1``):

- a PyTorch classifier (torchvision's ``resnet50-*.pth``: tensors, ``fc.*`` and batch-norm
  ``num_batches_tracked`` counters), zip or legacy ``torch.save`` format, or safetensors;
- a MegEngine classifier (a pickled dict of numpy arrays, maybe under ``"state_dict"``, with
  batch-norm tensors shaped ``(1, C, 1, 1)`` and grouped kernels 5-D);
- a whole detector checkpoint: the keys under ``backbone.body.`` (this library's or
  torchvision's) or ``backbone.bottom_up.`` (MegEngine's) are the body, the rest is ignored;
- any of them saved from ``DataParallel`` (every key under ``module.``).

The classifier (``fc.*``) and the batch-norm counters are dropped; every other body tensor
must be filled, with the shape the body has (after MegEngine's layouts are reshaped). Anything
else is a one-line :class:`~fasterrcnn.zoo.checkpoints.CheckpointError`, and the body is then
left as it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fasterrcnn.modeling.backbone import ResNet
from fasterrcnn.zoo.checkpoints import (
    CheckpointError,
    first_keys,
    key_problems,
    megengine_layout,
    read_state_dict,
    unwrap,
)

# A legacy (pre-zip) ``torch.save`` file opens with its magic number pickled as a protocol-2
# LONG1 of 10 bytes.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_DATA_PARALLEL = "module."
_DETECTOR_PREFIXES = {
    "backbone.body.": "detector checkpoint (fasterrcnn/torchvision names, backbone.body.*)",
    "backbone.bottom_up.": "MegEngine detector checkpoint (backbone.bottom_up.*)",
}
_CLASSIFIER = re.compile(r"fc\.(weight|bias)")
_COUNTER = "num_batches_tracked"
_BLOCK_KEY = re.compile(r"layer([1-4])\.(\d+)\.")
_DEPTHS: dict[tuple[bool, tuple[int, ...]], int] = {
    (False, (2, 2, 2, 2)): 18,
    (False, (3, 4, 6, 3)): 34,
    (True, (3, 4, 6, 3)): 50,
    (True, (3, 4, 23, 3)): 101,
    (True, (3, 8, 36, 3)): 152,
}


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
        classifier = [k for k in self.dropped if _CLASSIFIER.fullmatch(k)]
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
    :class:`~fasterrcnn.zoo.checkpoints.CheckpointError` (prefixed with the file name) and
    ``body`` is unchanged. Gradient flags, modes and devices of ``body`` are kept.
    """
    if not isinstance(body, ResNet):
        raise TypeError(
            "load_body_weights: body must be the detector's ResNet body (model.backbone.body), "
            f"not {type(body).__name__}"
        )
    if isinstance(weights, (str, Path)):
        try:
            return _load(body, _read(Path(weights)), str(weights))
        except CheckpointError as err:
            prefix = f"{weights}: "
            message = str(err)
            raise CheckpointError(
                message if message.startswith(prefix) else prefix + message
            ) from None
    if not isinstance(weights, Mapping):
        raise TypeError(
            "load_body_weights: weights must be a file path or a state dict, "
            f"not {type(weights).__name__}"
        )
    return _load(body, weights, "state dict")


def _read(path: Path) -> Any:
    """A checkpoint file's contents; legacy ``torch.save`` files too."""
    if path.is_file():
        with path.open("rb") as file:
            head = file.read(len(_LEGACY_TORCH_MAGIC))
        if head == _LEGACY_TORCH_MAGIC:
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise CheckpointError(f"not a checkpoint file ({reason})") from None
    return read_state_dict(path)


def _load(body: ResNet, checkpoint: Any, source: str) -> BodyLoadReport:
    state = unwrap(checkpoint)
    if not state:
        raise CheckpointError("checkpoint holds no tensors")
    state, data_parallel = _strip_data_parallel(state)
    state, detector_format, outside_body = _body_part(state)
    megengine = detector_format is not None and "MegEngine" in detector_format
    megengine = megengine or _looks_like_megengine(state)
    if detector_format is not None:
        checkpoint_format = detector_format
    elif megengine:
        checkpoint_format = "MegEngine ImageNet classifier"
    else:
        checkpoint_format = "PyTorch ImageNet classifier (torchvision names)"
    if data_parallel:
        checkpoint_format += ", DataParallel 'module.' prefix stripped"
    what = "ImageNet checkpoint" if detector_format is None else "detector checkpoint"

    target = body.state_dict()
    found = describe_body({k: tuple(getattr(v, "shape", ())) for k, v in state.items()})
    wanted = describe_body({k: tuple(v.shape) for k, v in target.items()})
    if found is None:
        raise CheckpointError(
            f"not a ResNet checkpoint: no key names a ResNet body tensor "
            f"(first keys: {first_keys(list(state))})"
        )
    if found != wanted:
        raise CheckpointError(f"{what} holds a {found} body, but the model's body is {wanted}")
    _check_norm(body, state)

    dropped: list[str] = []
    converted: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    for key, value in state.items():
        if _CLASSIFIER.fullmatch(key) or key.endswith(_COUNTER):
            dropped.append(key)
            continue
        if key not in target:
            unexpected.append(key)
            continue
        tensor = _as_tensor(value, key)
        want = target[key]
        if tensor.shape != want.shape:
            viewed = megengine_layout(tensor, want.shape) if megengine else None
            if viewed is None:
                mismatched.append(f"{key} {tuple(tensor.shape)} vs {tuple(want.shape)}")
                continue
            tensor = viewed
        if not tensor.is_floating_point():
            raise CheckpointError(f"{key} holds {tensor.dtype} values, not floating point")
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{key} holds non-finite values (NaN or infinity)")
        converted[key] = tensor
    mismatched_keys = {m.split(" ", 1)[0] for m in mismatched}
    missing = [
        k
        for k in target
        if k not in converted and k not in mismatched_keys and not k.endswith(_COUNTER)
    ]
    problems = key_problems(missing, unexpected, mismatched, "body keys")
    if problems:
        raise CheckpointError(f"{what} ({found}) does not fit the body: " + "; ".join(problems))

    with torch.no_grad():
        for key, tensor in converted.items():
            target[key].copy_(tensor)
    return BodyLoadReport(
        source=source,
        checkpoint_format=checkpoint_format,
        architecture=found,
        tensors_loaded=len(converted),
        dropped=tuple(dropped),
        outside_body=outside_body,
    )


def _strip_data_parallel(state: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    if all(key.startswith(_DATA_PARALLEL) for key in state):
        return {key[len(_DATA_PARALLEL) :]: value for key, value in state.items()}, True
    return state, False


def _body_part(state: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None, int]:
    """(the body's tensors without their prefix, the detector format or None for a
    classifier, how many keys lie outside the body)."""
    prefixes = [p for p in _DETECTOR_PREFIXES if any(key.startswith(p) for key in state)]
    if not prefixes:
        return state, None, 0
    if len(prefixes) > 1:
        raise CheckpointError(f"checkpoint has keys under both {' and '.join(prefixes)}")
    prefix = prefixes[0]
    part = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    return part, _DETECTOR_PREFIXES[prefix], len(state) - len(part)


def _looks_like_megengine(state: Mapping[str, Any]) -> bool:
    """Numpy arrays, or batch-norm statistics stored 4-D as MegEngine stores them."""
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            return True
        if key.endswith(("running_mean", "running_var")) and len(getattr(value, "shape", ())) == 4:
            return True
    return False


def _check_norm(body: ResNet, state: Mapping[str, Any]) -> None:
    if not any(isinstance(m, nn.GroupNorm) for m in body.modules()):
        return
    statistics = [k for k in state if k.endswith(("running_mean", "running_var"))]
    if statistics:
        raise CheckpointError(
            f"checkpoint has batch-norm statistics ({statistics[0]}, ...); the model's body uses "
            "group norm, which has none: build it with body.norm 'frozen_bn' or 'bn'"
        )


def describe_body(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """The ResNet a state dict in body names (``conv1.weight``, ``layer1.0.conv1.weight``...)
    holds, e.g. ``"ResNet-50 (bottleneck blocks)"`` or ``"ResNeXt-101 32x8d (bottleneck
    blocks)"``, from its block counts and kernel shapes; None without any body key."""
    blocks: list[set[int]] = [set(), set(), set(), set()]
    for key in shapes:
        match = _BLOCK_KEY.match(key)
        if match:
            blocks[int(match.group(1)) - 1].add(int(match.group(2)))
    if not any(blocks) and "conv1.weight" not in shapes:
        return None
    counts = tuple(len(b) for b in blocks)
    bottleneck = any(re.fullmatch(r"layer\d\.\d+\.conv3\.weight", k) for k in shapes)
    kind = "bottleneck blocks" if bottleneck else "basic blocks"
    depth = _DEPTHS.get((bottleneck, counts))
    groups, width = _groups_and_width(shapes.get("layer1.0.conv2.weight", ()))
    if depth is None:
        return f"ResNet of {counts} blocks per stage ({kind})"
    if groups > 1:
        return f"ResNeXt-{depth} {groups}x{width}d ({kind})"
    if bottleneck and width != 64:
        return f"Wide ResNet-{depth}, width {width} ({kind})"
    return f"ResNet-{depth} ({kind})"


def _groups_and_width(conv2: tuple[int, ...]) -> tuple[int, int]:
    """(groups, channels per group) of the first block's 3x3 conv: (out, in / groups, 3, 3)
    in PyTorch's layout, (groups, out / groups, in / groups, 3, 3) in MegEngine's."""
    if len(conv2) == 5:
        return conv2[0], conv2[1]
    if len(conv2) == 4 and conv2[1] > 0 and conv2[0] % conv2[1] == 0:
        groups = conv2[0] // conv2[1]
        return groups, conv2[0] // groups
    return 1, 64


def _as_tensor(value: Any, key: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value))
    raise CheckpointError(f"{key}: not an array but {type(value).__name__}")


__all__ = ["BodyLoadReport", "describe_body", "load_body_weights"]
