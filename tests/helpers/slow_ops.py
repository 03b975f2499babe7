"""Slow, obviously-correct reference ops for the tests (plain loops, straight from the definitions)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def roi_align_reference(
    features: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    border: str = "clamp",
) -> Tensor:
    """Slow, loop-by-loop RoIAlign written straight from the definition (for tests)."""
    ph, pw = output_size
    _, channels, height, width = features.shape
    out = torch.zeros((rois.shape[0], channels, ph, pw), dtype=torch.float64)
    feats = features.double()

    def pixel(img: int, y: int, x: int) -> Tensor:
        if 0 <= y < height and 0 <= x < width:
            return feats[img, :, y, x]
        return torch.zeros(channels, dtype=torch.float64)

    def sample(img: int, y: float, x: float) -> Tensor:
        if border == "clamp":
            if y < -1.0 or y > height or x < -1.0 or x > width:
                return torch.zeros(channels, dtype=torch.float64)
            y = min(max(y, 0.0), height - 1.0)
            x = min(max(x, 0.0), width - 1.0)
        y0, x0 = math.floor(y), math.floor(x)
        ly, lx = y - y0, x - x0
        return (
            (1 - ly) * (1 - lx) * pixel(img, y0, x0)
            + (1 - ly) * lx * pixel(img, y0, x0 + 1)
            + ly * (1 - lx) * pixel(img, y0 + 1, x0)
            + ly * lx * pixel(img, y0 + 1, x0 + 1)
        )

    offset = 0.5 if aligned else 0.0
    for r, (img, x1, y1, x2, y2) in enumerate(rois.double().tolist()):
        sx, sy = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        rw, rh = x2 * spatial_scale - offset - sx, y2 * spatial_scale - offset - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bw, bh = rw / pw, rh / ph
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / ph)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pw)
        for i in range(ph):
            for j in range(pw):
                acc = torch.zeros(channels, dtype=torch.float64)
                for a in range(gh):
                    for b in range(gw):
                        y = sy + i * bh + (a + 0.5) * bh / gh
                        x = sx + j * bw + (b + 0.5) * bw / gw
                        acc += sample(int(img), y, x)
                out[r, :, i, j] = acc / max(gh * gw, 1)
    return out.to(features.dtype)


def iou_reference(a: list[float], b: list[float]) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes in float64; 0 when both are empty."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms_reference(boxes: Tensor, scores: Tensor, iou_threshold: float) -> list[int]:
    """Greedy NMS, one box at a time.

    Visit boxes by decreasing score (equal scores: lower index first); keep a box unless its
    IoU with an already kept box is ``> iou_threshold``. Returns the kept indices in visit order.
    """
    box_list = boxes.double().tolist()
    score_list = scores.double().tolist()
    order = sorted(range(len(box_list)), key=lambda i: (-score_list[i], i))
    keep: list[int] = []
    for i in order:
        if all(iou_reference(box_list[i], box_list[k]) <= iou_threshold for k in keep):
            keep.append(i)
    return keep


def batched_nms_reference(
    boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float
) -> list[int]:
    """Greedy NMS within each group; kept indices by decreasing score, then input order."""
    keep: list[int] = []
    group_list = groups.tolist()
    for group in sorted(set(group_list)):
        index = [i for i, g in enumerate(group_list) if g == group]
        kept = nms_reference(boxes[index], scores[index], iou_threshold)
        keep.extend(index[k] for k in kept)
    score_list = scores.double().tolist()
    return sorted(keep, key=lambda i: (-score_list[i], i))
