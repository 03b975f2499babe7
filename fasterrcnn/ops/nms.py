"""Greedy non-maximum suppression, vectorized in pure PyTorch.

The pure version computes the whole overlap matrix at once with tensor operations, then
runs the greedy scan over its rows on the CPU, touching only the rows of kept boxes.
``torchvision.ops.nms`` is used instead when it imports and works, as an acceleration.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fasterrcnn.ops.backend import torchvision_op
from fasterrcnn.ops.boxes import box_iou


def nms_pure(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Pure-PyTorch greedy NMS. Same contract as :func:`nms`."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    # overlaps[i, j]: box i, if kept, removes box j (vectorized, on the boxes' device).
    overlaps = (box_iou(sorted_boxes, sorted_boxes) > iou_threshold).cpu().numpy()
    # The greedy scan itself touches each row of a kept box once: O(N * kept) bit operations.
    removed = np.zeros(len(overlaps), dtype=bool)
    kept = []
    for i in range(len(overlaps)):
        if not removed[i]:
            kept.append(i)
            removed |= overlaps[i]
    return order[torch.as_tensor(kept, dtype=torch.int64, device=order.device)]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS over ``boxes`` (Tensor[N, 4]) ranked by ``scores`` (Tensor[N]).

    A box is removed when its IoU with a higher-ranked kept box is ``> iou_threshold``.
    Returns the kept indices (Tensor[K] int64) in decreasing score order; equal scores keep
    their input order.
    """
    tv_nms = torchvision_op("nms")
    if tv_nms is not None:
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
    keep = torch.sort(torch.cat(kept)).values  # input order, so that ties keep it
    order = torch.sort(scores[keep], descending=True, stable=True).indices
    return keep[order]
