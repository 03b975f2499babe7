"""Greedy non-maximum suppression, vectorized in pure PyTorch.

The pure version computes the suppression matrix once and resolves the greedy scan with
matrix iterations (a box is kept when no earlier *kept* box overlaps it by more than the
threshold), which needs no per-box Python loop and runs on any device. The iteration
reaches the fixed point of the greedy scan, so the result is exactly greedy NMS.
``torchvision.ops.nms`` is used instead when it imports and works, as an acceleration.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from fasterrcnn.ops.boxes import box_iou


@functools.lru_cache(maxsize=1)
def _torchvision_nms():
    """``torchvision.ops.nms`` if it imports and runs here, else None."""
    try:
        from torchvision.ops import nms as tv_nms

        tv_nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    except Exception:
        return None
    return tv_nms


def nms_pure(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Pure-PyTorch greedy NMS. Same contract as :func:`nms`."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    # suppresses[i, j]: kept box i would remove box j (i ranks before j).
    suppresses = torch.triu(box_iou(sorted_boxes, sorted_boxes) > iou_threshold, diagonal=1)
    keep = torch.ones(order.numel(), dtype=torch.bool, device=boxes.device)
    # Each step fixes at least one more box of the greedy scan; usually a handful suffice.
    for _ in range(order.numel()):
        new_keep = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS over ``boxes`` (Tensor[N, 4]) ranked by ``scores`` (Tensor[N]).

    A box is removed when its IoU with a higher-ranked kept box is ``> iou_threshold``.
    Returns the kept indices (Tensor[K] int64) in decreasing score order; equal scores keep
    their input order.
    """
    tv_nms = _torchvision_nms()
    if tv_nms is not None and not torch.jit.is_scripting():
        return tv_nms(boxes, scores, iou_threshold)
    return nms_pure(boxes, scores, iou_threshold)


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """NMS run independently within each group (e.g. class or pyramid level).

    Args:
        boxes: Tensor[N, 4]; scores: Tensor[N]; groups: Tensor[N] integer group ids.

    Returns:
        Tensor[K] int64 indices of kept boxes, in decreasing score order.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    kept = []
    for group in torch.unique(groups):
        index = torch.nonzero(groups == group).squeeze(1)
        kept.append(index[nms(boxes[index], scores[index], iou_threshold)])
    keep = torch.cat(kept)
    order = torch.sort(scores[keep], descending=True, stable=True).indices
    return keep[order]
