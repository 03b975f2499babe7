"""Greedy non-maximum suppression, vectorized in pure PyTorch.

The pure version computes the whole overlap matrix at once with tensor operations, then
runs the greedy scan over its rows on the CPU, touching only the rows of kept boxes.
``torchvision.ops.nms`` is used instead when it imports and works, as an acceleration.

:func:`batched_nms` also has the forms a graph needs (see :mod:`fasterrcnn.ops.graph_nms`):
ONNX's ``NonMaxSuppression`` while exporting to ONNX, a TorchScript function while tracing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fasterrcnn.ops import graph_nms
from fasterrcnn.ops.backend import torchvision_op
from fasterrcnn.ops.boxes import box_iou
from fasterrcnn.ops.groups import sort_by_group


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
        Tensor[K] int64 indices of kept boxes, in decreasing score order; equal scores keep
        their input order.

    On the CPU each group runs on its own, exactly. On other devices with torchvision, all
    groups run in one call without a host synchronisation: each group's boxes are shifted
    apart by a multiple of the largest coordinate (torchvision's coordinate-offset trick).
    """
    if torch.onnx.is_in_onnx_export():
        return graph_nms.onnx_batched_nms(boxes, scores, groups, iou_threshold)
    if torch.jit.is_tracing():
        return graph_nms.scripted_batched_nms(boxes, scores, groups, iou_threshold)
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    tv_nms = torchvision_op("nms")
    if boxes.device.type != "cpu" and tv_nms is not None:
        offsets = groups.to(boxes.dtype) * (boxes.max() + 1)
        return tv_nms(boxes + offsets[:, None], scores, iou_threshold)
    kept = []
    for group in torch.unique(groups):
        index = torch.nonzero(groups == group).squeeze(1)
        kept.append(index[nms(boxes[index], scores[index], iou_threshold)])
    keep = torch.sort(torch.cat(kept)).values  # input order, so that ties keep it
    order = torch.sort(scores[keep], descending=True, stable=True).indices
    return keep[order]


def top_per_image(keep: Tensor, image: Tensor, limit: int, num_images: int | Tensor) -> Tensor:
    """The first ``limit`` of ``keep`` (Tensor[K], best first) within each image, image by
    image: ``image`` Tensor[K] int64 is the image of each. Without a host synchronisation."""
    order, _, _, rank = sort_by_group(image, num_images)
    return keep[order][rank < limit]
