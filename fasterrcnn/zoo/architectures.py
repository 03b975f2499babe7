"""Architecture describers for messages: the ResNet a body's state dict holds (from its block
counts and kernel shapes), and a detector's body, FPN, RPN and predictor."""

from __future__ import annotations

import re
from collections.abc import Mapping

_BODY = "backbone.body."  # where a detector's state dict keeps its body
_BLOCK_KEY = re.compile(r"layer([1-4])\.(\d+)\.")
_DEPTHS: dict[tuple[bool, tuple[int, ...]], int] = {
    (False, (2, 2, 2, 2)): 18,
    (False, (3, 4, 6, 3)): 34,
    (True, (3, 4, 6, 3)): 50,
    (True, (3, 4, 23, 3)): 101,
    (True, (3, 8, 36, 3)): 152,
}


def describe_architecture(shapes: Mapping[str, tuple]) -> str:
    """A short description (body, FPN, RPN, predictor) of a detector's state dict in our
    names; its body is described by :func:`describe_body`."""
    body_shapes = {k[len(_BODY) :]: v for k, v in shapes.items() if k.startswith(_BODY)}
    body = describe_body(body_shapes) or "no ResNet body"
    fpn_bias = "with" if "backbone.fpn.output_convs.0.conv.bias" in shapes else "without"
    fpn_norm = ", norms" if "backbone.fpn.output_convs.0.norm.weight" in shapes else ""
    objectness = shapes.get("rpn.head.objectness.weight", (0,))[0]
    rpn = "2-class softmax RPN" if objectness == 6 else "sigmoid RPN"
    logits = shapes.get("roi_heads.predictor.cls_score.weight", (0,))[0]
    deltas = shapes.get("roi_heads.predictor.bbox_pred.weight", (0,))[0]
    return f"{body}, FPN {fpn_bias} conv bias{fpn_norm}, {rpn}, {logits} classes / {deltas} deltas"


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
