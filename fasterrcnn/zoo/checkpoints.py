"""Reading checkpoint files and translating each family's parameter names to ours.

Each family has one explicit key map: an ordered list of ``(pattern, replacement)`` rules on
the checkpoint's names (the first matching rule wins; a replacement of None drops the key on
purpose). Loading is strict: every checkpoint key must map to a model key, every model key
must be filled, and shapes must agree. Errors are :class:`CheckpointError` with one line.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

Family = Literal["native", "torchvision", "megengine", "detectron2"]
Rule = tuple[str, "str | Callable[[re.Match[str]], str] | None"]


_ALIGNMENT = 64  # bytes; what PyTorch's CPU allocator guarantees


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into a model; the message is one line."""


def _level(offset: int, template: str) -> Callable[[re.Match[str]], str]:
    """Replacement that rewrites group 1 (a pyramid level number) as ``level - offset``."""
    return lambda m: template.format(int(m.group(1)) - offset, *m.groups()[1:])


# The FPN convs of P2..P5 as MegEngine and detectron2 both name them.
_FPN_CONVS: list[Rule] = [
    (
        r"backbone\.fpn_lateral(\d)\.(weight|bias)",
        _level(2, "backbone.fpn.lateral_convs.{}.conv.{}"),
    ),
    (
        r"backbone\.fpn_output(\d)\.(weight|bias)",
        _level(2, "backbone.fpn.output_convs.{}.conv.{}"),
    ),
]

KEY_MAPS: dict[Family, list[Rule]] = {
    "native": [(r"(.*)", r"\1")],
    "torchvision": [
        (r".*num_batches_tracked$", None),  # batch-norm counters, not weights
        (r"backbone\.body\.(.*)", r"backbone.body.\1"),
        (
            r"backbone\.fpn\.inner_blocks\.(\d)\.(?:0\.)?(weight|bias)",
            _level(0, "backbone.fpn.lateral_convs.{}.conv.{}"),
        ),
        (
            r"backbone\.fpn\.layer_blocks\.(\d)\.(?:0\.)?(weight|bias)",
            _level(0, "backbone.fpn.output_convs.{}.conv.{}"),
        ),
        (r"rpn\.head\.conv\.(?:0\.0\.)?(weight|bias)", r"rpn.head.conv.\1"),
        (r"rpn\.head\.cls_logits\.(.*)", r"rpn.head.objectness.\1"),
        (r"rpn\.head\.bbox_pred\.(.*)", r"rpn.head.deltas.\1"),
        (r"roi_heads\.box_head\.fc6\.(.*)", r"roi_heads.box_head.fc1.\1"),
        (r"roi_heads\.box_head\.fc7\.(.*)", r"roi_heads.box_head.fc2.\1"),
        (r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(.*)", r"roi_heads.predictor.\1.\2"),
    ],
    # MegEngine 1.x names; 0.x spells the heads RPN./RCNN. and keeps the ImageNet classifier.
    "megengine": [
        (r"backbone\.bottom_up\.fc\..*", None),  # ImageNet classifier, unused by detection
        (r"backbone\.bottom_up\.(.*)", r"backbone.body.\1"),
        *_FPN_CONVS,
        (
            r"backbone\.fpn_lateral(\d)\.norm\.(.*)",
            _level(2, "backbone.fpn.lateral_convs.{}.norm.{}"),
        ),
        (
            r"backbone\.fpn_output(\d)\.norm\.(.*)",
            _level(2, "backbone.fpn.output_convs.{}.norm.{}"),
        ),
        (r"(?:rpn|RPN)\.rpn_conv\.(.*)", r"rpn.head.conv.\1"),
        (r"(?:rpn|RPN)\.rpn_cls_score\.(.*)", r"rpn.head.objectness.\1"),
        (r"(?:rpn|RPN)\.rpn_bbox_offsets\.(.*)", r"rpn.head.deltas.\1"),
        (r"(?:rcnn|RCNN)\.(fc1|fc2)\.(.*)", r"roi_heads.box_head.\1.\2"),
        (r"(?:rcnn|RCNN)\.pred_cls\.(.*)", r"roi_heads.predictor.cls_score.\1"),
        (r"(?:rcnn|RCNN)\.pred_delta\.(.*)", r"roi_heads.predictor.bbox_pred.\1"),
    ],
    "detectron2": [
        (r"pixel_(?:mean|std)", None),  # input normalization, part of the configuration
        (r"proposal_generator\.anchor_generator\.cell_anchors\.\d+", None),
        (r"backbone\.bottom_up\.stem\.conv1\.weight", "backbone.body.conv1.weight"),
        (r"backbone\.bottom_up\.stem\.conv1\.norm\.(.*)", r"backbone.body.bn1.\1"),
        (
            r"backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.weight",
            _level(1, "backbone.body.layer{}.{}.conv{}.weight"),
        ),
        (
            r"backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.norm\.(.*)",
            _level(1, "backbone.body.layer{}.{}.bn{}.{}"),
        ),
        (
            r"backbone\.bottom_up\.res(\d)\.(\d+)\.shortcut\.weight",
            _level(1, "backbone.body.layer{}.{}.downsample.0.weight"),
        ),
        (
            r"backbone\.bottom_up\.res(\d)\.(\d+)\.shortcut\.norm\.(.*)",
            _level(1, "backbone.body.layer{}.{}.downsample.1.{}"),
        ),
        *_FPN_CONVS,
        (r"proposal_generator\.rpn_head\.conv\.(.*)", r"rpn.head.conv.\1"),
        (r"proposal_generator\.rpn_head\.objectness_logits\.(.*)", r"rpn.head.objectness.\1"),
        (r"proposal_generator\.rpn_head\.anchor_deltas\.(.*)", r"rpn.head.deltas.\1"),
        (r"roi_heads\.box_head\.(fc1|fc2)\.(.*)", r"roi_heads.box_head.\1.\2"),
        (
            r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(.*)",
            r"roi_heads.predictor.\1.\2",
        ),
    ],
}


def megengine_layout(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """MegEngine's storage layouts, viewed in PyTorch's ``shape``, or None if not one of them:
    ``(1, C, 1, 1)`` conv biases and norm tensors for ``(C,)``, and 5-D grouped kernels
    ``(groups, out / groups, in / groups, kh, kw)`` for ``(out, in / groups, kh, kw)``."""
    if tensor.dim() == 4 and len(shape) == 1 and tuple(tensor.shape) == (1, shape[0], 1, 1):
        return tensor.reshape(shape)
    if (
        tensor.dim() == 5
        and len(shape) == 4
        and tensor.shape[0] * tensor.shape[1] == shape[0]
        and tensor.shape[2:] == shape[1:]
    ):
        return tensor.reshape(shape)
    return None


# Families that store some tensors in another layout than PyTorch's.
LAYOUTS: dict[Family, Callable[[torch.Tensor, torch.Size], torch.Tensor | None]] = {
    "megengine": megengine_layout,
}

# Keys that tell the families apart.
_SIGNATURES: list[tuple[Family, str]] = [
    ("native", "rpn.head.objectness.weight"),
    ("torchvision", "rpn.head.cls_logits.weight"),
    ("megengine", "rpn.rpn_cls_score.weight"),
    ("megengine", "RPN.rpn_cls_score.weight"),
    ("detectron2", "proposal_generator.rpn_head.objectness_logits.weight"),
]

FAMILY_NAMES: dict[Family, str] = {
    "native": "fasterrcnn",
    "torchvision": "torchvision",
    "megengine": "MegEngine",
    "detectron2": "detectron2",
}


def detect_family(state_dict: Mapping[str, Any]) -> Family | None:
    """The checkpoint family whose signature key ``state_dict`` has, if any."""
    for family, key in _SIGNATURES:
        if key in state_dict:
            return family
    return None


def _translate(key: str, rules: list[Rule]) -> str | None:
    for pattern, replacement in rules:
        match = re.fullmatch(pattern, key)
        if match:
            if replacement is None:
                return None
            if callable(replacement):
                return replacement(match)
            return match.expand(replacement)
    raise KeyError(key)


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
    state_dict: Mapping[str, Any], model: nn.Module, family: Family
) -> dict[str, torch.Tensor]:
    """Translate ``state_dict`` of ``family`` into ``model``'s names and shapes (strict)."""
    rules = KEY_MAPS[family]
    target = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    misfit: set[str] = set()
    for key, value in state_dict.items():
        try:
            name = _translate(key, rules)
        except KeyError:
            unexpected.append(key)
            continue
        if name is None:
            continue
        if name not in target:
            unexpected.append(key)
            continue
        tensor = _as_tensor(value, key)
        want = target[name]
        if tensor.shape != want.shape:
            layout = LAYOUTS.get(family)
            viewed = layout(tensor, want.shape) if layout else None
            if viewed is None:
                mismatched.append(f"{key} {tuple(tensor.shape)} vs {tuple(want.shape)}")
                misfit.add(name)
                continue
            tensor = viewed
        converted[name] = tensor.to(want.dtype)
    missing = [
        k
        for k in target
        if k not in converted and k not in misfit and not k.endswith("num_batches_tracked")
    ]
    problems = key_problems(missing, unexpected, mismatched, "keys (model names)")
    if problems:
        raise CheckpointError("; ".join(problems))
    return converted


def _as_tensor(value: Any, key: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (int, float)):
        return torch.tensor(value)
    raise CheckpointError(f"{key}: not an array but {type(value).__name__}")


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
        try:
            _load_checked(model, unwrap(read_state_dict(weights)), expected, own=True)
        except CheckpointError as err:
            message = str(err)
            prefix = f"{weights}: "
            raise CheckpointError(
                message if message.startswith(prefix) else prefix + message
            ) from None
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
        converted = convert_state_dict(state_dict, model, family)
    except CheckpointError as err:
        found = describe_architecture(_translated_shapes(state_dict, family))
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


def _translated_shapes(state_dict: Mapping[str, Any], family: Family) -> dict[str, tuple]:
    shapes = {}
    for key, value in state_dict.items():
        try:
            name = _translate(key, KEY_MAPS[family])
        except KeyError:
            continue
        if name is not None:
            shapes[name] = tuple(getattr(value, "shape", ()))
    return shapes


def describe_architecture(shapes: Mapping[str, tuple]) -> str:
    """A short description (body, FPN, RPN, predictor) of a state dict in our names."""
    blocks = {k.split(".")[3] for k in shapes if k.startswith("backbone.body.layer3.")}
    bottleneck = any(k.endswith("conv3.weight") for k in shapes)
    depth = {2: 18, 6: 50 if bottleneck else 34, 23: 101, 36: 152}.get(len(blocks), "?")
    conv2 = shapes.get("backbone.body.layer1.0.conv2.weight", ())
    grouped = len(conv2) >= 2 and conv2[1] != conv2[0]
    body = f"ResNeXt-{depth}" if grouped else f"ResNet-{depth}"
    fpn_bias = "with" if "backbone.fpn.output_convs.0.conv.bias" in shapes else "without"
    fpn_norm = ", norms" if "backbone.fpn.output_convs.0.norm.weight" in shapes else ""
    objectness = shapes.get("rpn.head.objectness.weight", (0,))[0]
    rpn = "2-class softmax RPN" if objectness == 6 else "sigmoid RPN"
    logits = shapes.get("roi_heads.predictor.cls_score.weight", (0,))[0]
    deltas = shapes.get("roi_heads.predictor.bbox_pred.weight", (0,))[0]
    return f"{body}, FPN {fpn_bias} conv bias{fpn_norm}, {rpn}, {logits} classes / {deltas} deltas"


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


def read_state_dict(path: str | Path) -> Mapping[str, Any]:
    """Read a ``.pth``/``.pt`` (torch, weights only), safetensors or pickle file.

    A safetensors file is recognised by its ``.safetensors`` suffix or by its header.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    with path.open("rb") as file:
        head = file.read(9)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head, path.stat().st_size):
        return read_safetensors(path)[0]
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"{path}: empty file")
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return safe_unpickle(data)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a checkpoint file ({reason})") from None


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
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a safetensors file ({reason})") from None


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
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(f"{path}: unreadable tensor data ({reason})") from None
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
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"not a checkpoint file ({reason})") from None
