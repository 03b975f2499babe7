"""The key map of every checkpoint family: how its parameter names translate to ours.

A key map is an explicit ordered list of ``(pattern, replacement)`` rules on the checkpoint's
names (the first rule whose pattern matches the whole name wins; a replacement of None drops
the key on purpose), with the storage layout of a family that keeps some tensors in another
shape than PyTorch. Detector families translate to ``model.state_dict()`` names; body
families (ImageNet classifiers, the body of a detector checkpoint) to the names of the
detector's ResNet body, ``model.backbone.body``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

Family = Literal["native", "torchvision", "megengine", "detectron2"]
BodyFamily = Literal["torch_classifier", "megengine_classifier", "detector", "megengine_detector"]
Rule = tuple[str, "str | Callable[[re.Match[str]], str] | None"]
Layout = Callable[[torch.Tensor, torch.Size], "torch.Tensor | None"]


@dataclass(frozen=True)
class KeyMap:
    """One family's translation of checkpoint names to a target's (a model's or a body's).

    ``name``: the family in messages; ``rules``: the ordered ``(pattern, replacement)``
    rules; ``layout``: the family's storage layout (a checkpoint tensor viewed in the target's
    shape, or None if it is not one of the family's layouts), None if it stores PyTorch's;
    ``prefix``: what the family's names of the target's tensors start with ("" for none);
    ``missing_noun``: what a message calls the target's unfilled keys.
    """

    name: str
    rules: tuple[Rule, ...]
    layout: Layout | None = None
    prefix: str = ""
    missing_noun: str = "keys (model names)"

    def translate(self, key: str) -> str | None:
        """Our name of checkpoint ``key`` (None: dropped on purpose); KeyError if no rule
        matches it."""
        for pattern, replacement in self.rules:
            match = re.fullmatch(pattern, key)
            if match:
                if replacement is None:
                    return None
                if callable(replacement):
                    return replacement(match)
                return match.expand(replacement)
        raise KeyError(key)

    def under(self, prefix: str, note: str) -> KeyMap:
        """The same family with every name under ``prefix`` (a wrapper's), ``note`` added to
        its name in messages."""
        rules = tuple((re.escape(prefix) + pattern, into) for pattern, into in self.rules)
        return replace(self, name=self.name + note, rules=rules, prefix=prefix + self.prefix)


def _level(offset: int, template: str) -> Callable[[re.Match[str]], str]:
    """Replacement that rewrites group 1 (a pyramid level number) as ``level - offset``."""
    return lambda m: template.format(int(m.group(1)) - offset, *m.groups()[1:])


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


# The FPN convs of P2..P5 as MegEngine and detectron2 both name them.
_FPN_CONVS: tuple[Rule, ...] = (
    (
        r"backbone\.fpn_lateral(\d)\.(weight|bias)",
        _level(2, "backbone.fpn.lateral_convs.{}.conv.{}"),
    ),
    (
        r"backbone\.fpn_output(\d)\.(weight|bias)",
        _level(2, "backbone.fpn.output_convs.{}.conv.{}"),
    ),
)

KEY_MAPS: dict[Family, KeyMap] = {
    "native": KeyMap("fasterrcnn", ((r"(.*)", r"\1"),)),
    "torchvision": KeyMap(
        "torchvision",
        (
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
            (
                r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(.*)",
                r"roi_heads.predictor.\1.\2",
            ),
        ),
    ),
    # MegEngine 1.x names; 0.x spells the heads RPN./RCNN. and keeps the ImageNet classifier.
    "megengine": KeyMap(
        "MegEngine",
        (
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
        ),
        layout=megengine_layout,
    ),
    "detectron2": KeyMap(
        "detectron2",
        (
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
        ),
    ),
}

# ImageNet bodies, translated to the body's names (torchvision's ResNet names, which
# MegEngine's classifiers share). The classifier ``fc.*`` and the batch-norm counters are
# dropped, and so is everything of a detector checkpoint outside its body.
_CLASSIFIER_RULES: tuple[Rule, ...] = (
    (r"fc\.(?:weight|bias)", None),  # the ImageNet classifier
    (r".*num_batches_tracked", None),  # batch-norm counters, not weights
    (r"(.*)", r"\1"),
)
BODY_KEY_MAPS: dict[BodyFamily, KeyMap] = {
    "torch_classifier": KeyMap(
        "PyTorch ImageNet classifier (torchvision names)",
        _CLASSIFIER_RULES,
        missing_noun="body keys",
    ),
    "megengine_classifier": KeyMap(
        "MegEngine ImageNet classifier",
        _CLASSIFIER_RULES,
        layout=megengine_layout,
        missing_noun="body keys",
    ),
    "detector": KeyMap(
        "detector checkpoint (fasterrcnn/torchvision names, backbone.body.*)",
        (
            (r"backbone\.body\.fc\.(?:weight|bias)", None),
            (r"backbone\.body\..*num_batches_tracked", None),
            (r"backbone\.body\.(.*)", r"\1"),
            (r".*", None),  # FPN and heads
        ),
        prefix="backbone.body.",
        missing_noun="body keys",
    ),
    "megengine_detector": KeyMap(
        "MegEngine detector checkpoint (backbone.bottom_up.*)",
        (
            (r"backbone\.bottom_up\.fc\.(?:weight|bias)", None),  # 0.x keeps the classifier
            (r"backbone\.bottom_up\..*num_batches_tracked", None),
            (r"backbone\.bottom_up\.(.*)", r"\1"),
            (r".*", None),  # FPN and heads
        ),
        layout=megengine_layout,
        prefix="backbone.bottom_up.",
        missing_noun="body keys",
    ),
}

# What every key of a checkpoint saved from ``DataParallel`` starts with.
DATA_PARALLEL = "module."

# Keys that tell the detector families apart.
_SIGNATURES: list[tuple[Family, str]] = [
    ("native", "rpn.head.objectness.weight"),
    ("torchvision", "rpn.head.cls_logits.weight"),
    ("megengine", "rpn.rpn_cls_score.weight"),
    ("megengine", "RPN.rpn_cls_score.weight"),
    ("detectron2", "proposal_generator.rpn_head.objectness_logits.weight"),
]

FAMILY_NAMES: dict[Family, str] = {family: key_map.name for family, key_map in KEY_MAPS.items()}


def detect_family(state_dict: Mapping[str, Any]) -> Family | None:
    """The detector checkpoint family whose signature key ``state_dict`` has, if any."""
    for family, key in _SIGNATURES:
        if key in state_dict:
            return family
    return None
