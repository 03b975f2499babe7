"""Training side of the RoI heads: which proposals the box head learns from, what each should
predict, and the classification and box losses.

Shape shorthand: R sampled RoIs over the batch, C foreground classes, K = C + 1 logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fasterrcnn.config import BoxHeadConfig
from fasterrcnn.modeling.targets import Targets
from fasterrcnn.ops.boxes import box_iou, encode_boxes
from fasterrcnn.ops.matcher import FOREGROUND, match_boxes
from fasterrcnn.ops.sampling import sample_balanced


@dataclass
class RoISamples:
    """The RoIs the box head is trained on, and their targets.

    ``rois``: Tensor[R, 5] ``(batch_index, x1, y1, x2, y2)``; ``classes``: Tensor[R] int64,
    the logit index each RoI should score highest (its ground truth's class, or the
    background); ``foreground``: Tensor[R] bool; ``box_targets``: Tensor[R, 4] the deltas
    from each RoI to its ground-truth box (rows of background RoIs are not used).
    """

    rois: Tensor
    classes: Tensor
    foreground: Tensor
    box_targets: Tensor


def logit_index(labels: Tensor, cfg: BoxHeadConfig) -> Tensor:
    """Foreground class indices (0..C-1) -> their logit index (the background is first or
    last)."""
    return labels + 1 if cfg.background == "first" else labels


def background_index(cfg: BoxHeadConfig) -> int:
    return 0 if cfg.background == "first" else cfg.num_classes


@torch.no_grad()
def sample_rois(
    proposals: Sequence[Tensor], targets: Sequence[Targets], cfg: BoxHeadConfig
) -> RoISamples:
    """Add each image's ground-truth boxes to its proposals (Tensor[Pi, 4]), label them by
    their best IoU with the ground truth and draw ``batch_size_per_image`` per image."""
    s = cfg.sampling
    rois, classes, foreground, box_targets = [], [], [], []
    for i, (boxes, target) in enumerate(zip(proposals, targets, strict=True)):
        candidates = torch.cat((boxes, target.boxes.to(boxes.dtype)))
        match = match_boxes(
            box_iou(target.boxes, candidates),
            s.fg_iou_threshold,
            s.bg_iou_threshold,
            bg_low=s.bg_iou_low,
            allow_low_quality=s.allow_low_quality_matches,
        )
        positive, negative = sample_balanced(
            match.labels, s.batch_size_per_image, s.positive_fraction, target.generator(1)
        )
        picked = torch.cat((positive, negative))
        is_foreground = match.labels[picked] == FOREGROUND
        picked_boxes = candidates[picked]
        image_classes = torch.full_like(picked, background_index(cfg))
        if len(target.boxes):
            matched = match.matches[picked]
            image_classes = torch.where(
                is_foreground, logit_index(target.labels[matched], cfg), image_classes
            )
            deltas = encode_boxes(picked_boxes, target.boxes[matched], cfg.box_coder.weights)
        else:
            deltas = torch.zeros_like(picked_boxes)
        rois.append(torch.cat((picked_boxes.new_full((len(picked), 1), i), picked_boxes), dim=1))
        classes.append(image_classes)
        foreground.append(is_foreground)
        box_targets.append(deltas)
    return RoISamples(
        torch.cat(rois), torch.cat(classes), torch.cat(foreground), torch.cat(box_targets)
    )


def roi_losses(
    class_logits: Tensor, box_deltas: Tensor, samples: RoISamples, cfg: BoxHeadConfig
) -> dict[str, Tensor]:
    """``{"roi_classification", "roi_box"}``: cross-entropy over the K logits, and the
    (smooth) L1 loss of the foreground RoIs' deltas for their ground-truth class; both divided
    by the number of sampled RoIs.

    ``class_logits`` Tensor[R, K]; ``box_deltas`` Tensor[R, C or K, 4].
    """
    normalizer = max(len(samples.classes), 1)
    classification = F.cross_entropy(class_logits, samples.classes, reduction="sum")
    rows = torch.nonzero(samples.foreground).squeeze(1)
    classes = samples.classes[rows]
    if not cfg.deltas_include_background and cfg.background == "first":
        classes = classes - 1  # deltas of foreground classes only: class c at slot c
    box = F.smooth_l1_loss(
        box_deltas[rows, classes],
        samples.box_targets[rows],
        beta=cfg.smooth_l1_beta,
        reduction="sum",
    )
    return {"roi_classification": classification / normalizer, "roi_box": box / normalizer}
