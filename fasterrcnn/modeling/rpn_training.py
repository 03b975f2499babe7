"""Training side of the RPN: anchor labels and box targets, anchor sampling, the two losses.

Shape shorthand: N images, A anchors over all levels (the (y, x, anchor) order of
:class:`~fasterrcnn.modeling.rpn.RPNOutput`), G ground-truth boxes of one image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fasterrcnn.config import RPNConfig
from fasterrcnn.modeling.rpn import RPNOutput
from fasterrcnn.modeling.targets import Targets
from fasterrcnn.ops.boxes import box_iou, encode_boxes
from fasterrcnn.ops.matcher import MatchResult, match_boxes
from fasterrcnn.ops.sampling import sample_balanced


def label_anchors(anchors: list[Tensor], gt_boxes: Tensor, cfg: RPNConfig) -> tuple[Tensor, Tensor]:
    """Labels Tensor[A] (1 object, 0 background, -1 ignored) and the index of each anchor's
    ground-truth box Tensor[A], for one image.

    ``anchors``: Tensor[Ai, 4] per level. The anchors of all levels are matched together,
    or each level's on its own with ``cfg.match_per_level`` (low-quality matches then count
    per level too).
    """
    groups = anchors if cfg.match_per_level else [torch.cat(anchors)]
    labels, matches = [], []
    for group in groups:
        result = _match(box_iou(gt_boxes, group), cfg)
        labels.append(result.labels)
        matches.append(result.matches)
    return torch.cat(labels), torch.cat(matches)


def _match(iou: Tensor, cfg: RPNConfig) -> MatchResult:
    s = cfg.sampling
    return match_boxes(
        iou,
        s.fg_iou_threshold,
        s.bg_iou_threshold,
        bg_low=s.bg_iou_low,
        allow_low_quality=s.allow_low_quality_matches,
    )


def rpn_losses(output: RPNOutput, targets: Sequence[Targets], cfg: RPNConfig) -> dict[str, Tensor]:
    """``{"rpn_objectness", "rpn_box"}``: the objectness loss (binary cross-entropy for a
    sigmoid RPN, 2-way cross-entropy for a softmax one) over the sampled anchors, and the
    (smooth) L1 loss of the object anchors' deltas, both divided per ``cfg.loss_normalizer``.
    """
    anchors = torch.cat(output.anchors)
    objectness = torch.cat(output.objectness, dim=1)  # (N, A, K)
    deltas = torch.cat(output.deltas, dim=1)  # (N, A, 4)
    s = cfg.sampling
    images, chosen, is_object, box_images, box_anchors, box_targets = [], [], [], [], [], []
    for i, target in enumerate(targets):
        labels, matches = label_anchors(output.anchors, target.boxes, cfg)
        positive, negative = sample_balanced(
            labels, s.batch_size_per_image, s.positive_fraction, target.generator(0)
        )
        picked = torch.cat((positive, negative))
        images.append(torch.full_like(picked, i))
        chosen.append(picked)
        is_object.append(torch.cat((torch.ones_like(positive), torch.zeros_like(negative))))
        box_images.append(torch.full_like(positive, i))
        box_anchors.append(positive)
        box_targets.append(
            encode_boxes(anchors[positive], target.boxes[matches[positive]], cfg.box_coder.weights)
        )
    image_index, anchor_index = torch.cat(images), torch.cat(chosen)
    labels = torch.cat(is_object)
    logits = objectness[image_index, anchor_index]  # (S, K)
    if logits.shape[1] == 1:
        objectness_loss = F.binary_cross_entropy_with_logits(
            logits[:, 0], labels.to(logits.dtype), reduction="sum"
        )
    else:  # (background, object) logits
        objectness_loss = F.cross_entropy(logits, labels, reduction="sum")
    box_loss = F.smooth_l1_loss(
        deltas[torch.cat(box_images), torch.cat(box_anchors)],
        torch.cat(box_targets),
        beta=cfg.smooth_l1_beta,
        reduction="sum",
    )
    if cfg.loss_normalizer == "sampled":
        normalizer = max(anchor_index.numel(), 1)
    else:
        normalizer = s.batch_size_per_image * len(targets)
    return {"rpn_objectness": objectness_loss / normalizer, "rpn_box": box_loss / normalizer}
