"""Pure box functions on plain tensors.

Boxes are ``Tensor[N, 4]`` in ``(x1, y1, x2, y2)`` pixel coordinates with ``0 <= x1 <= x2``;
a box's width is ``x2 - x1`` (no "+1").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def box_area(boxes: Tensor) -> Tensor:
    """Areas of ``boxes`` (Tensor[N, 4]) as Tensor[N]."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of Tensor[N, 4] and Tensor[M, 4] as Tensor[N, M]; empty boxes give 0."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def clip_boxes(boxes: Tensor, size: tuple[int, int] | tuple[float, float] | Tensor) -> Tensor:
    """Clip Tensor[..., 4] boxes to ``[0, w] x [0, h]``.

    ``size`` is one ``(h, w)`` for all boxes, or a Tensor[..., 2] of ``(h, w)`` rows that
    broadcasts against ``boxes[..., 0]`` (one size per image of a batch, say).
    """
    x = boxes[..., 0::2].clamp(min=0)
    y = boxes[..., 1::2].clamp(min=0)
    if isinstance(size, Tensor):
        size = size.to(boxes.dtype)
        x = torch.minimum(x, size[..., 1, None])
        y = torch.minimum(y, size[..., 0, None])
    else:
        x = x.clamp(max=size[1])
        y = y.clamp(max=size[0])
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def nonempty_mask(boxes: Tensor, min_size: float = 0.0) -> Tensor:
    """Tensor[...] bool: boxes (Tensor[..., 4]) whose width and height are both ``> 0`` and
    ``>= min_size``."""
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return (w > 0) & (h > 0) & (w >= min_size) & (h >= min_size)


def scale_boxes(boxes: Tensor, scale_xy: tuple[float, float]) -> Tensor:
    """Multiply x coordinates by ``scale_xy[0]`` and y coordinates by ``scale_xy[1]``."""
    sx, sy = scale_xy
    factors = boxes.new_tensor([sx, sy, sx, sy])
    return boxes * factors


def encode_boxes(
    reference: Tensor, targets: Tensor, weights: tuple[float, float, float, float]
) -> Tensor:
    """Deltas ``(dx, dy, dw, dh)`` (Tensor[N, 4]) that turn ``reference`` boxes into ``targets``.

    ``dx = wx * (tx - rx) / rw``, ``dw = ww * log(tw / rw)`` and likewise for y/h, with
    centres at ``x1 + w / 2``.
    """
    wx, wy, ww, wh = weights
    rw = reference[:, 2] - reference[:, 0]
    rh = reference[:, 3] - reference[:, 1]
    rx = reference[:, 0] + 0.5 * rw
    ry = reference[:, 1] + 0.5 * rh
    tw = targets[:, 2] - targets[:, 0]
    th = targets[:, 3] - targets[:, 1]
    tx = targets[:, 0] + 0.5 * tw
    ty = targets[:, 1] + 0.5 * th
    return torch.stack(
        (
            wx * (tx - rx) / rw,
            wy * (ty - ry) / rh,
            ww * torch.log(tw / rw),
            wh * torch.log(th / rh),
        ),
        dim=1,
    )


def decode_boxes(
    reference: Tensor,
    deltas: Tensor,
    weights: tuple[float, float, float, float],
    scale_clamp: float | None = DEFAULT_SCALE_CLAMP,
) -> Tensor:
    """Apply ``deltas`` (Tensor[N, K, 4] or Tensor[N, 4]) to ``reference`` (Tensor[N, 4]).

    Returns boxes shaped like ``deltas``. ``dw`` and ``dh`` are divided by their weights and,
    unless ``scale_clamp`` is None, clamped to at most ``scale_clamp`` before ``exp``.
    """
    squeeze = deltas.dim() == 2
    if squeeze:
        deltas = deltas[:, None, :]
    reference = reference.to(deltas.dtype)
    widths = (reference[:, 2] - reference[:, 0])[:, None]
    heights = (reference[:, 3] - reference[:, 1])[:, None]
    ctr_x = reference[:, 0][:, None] + 0.5 * widths
    ctr_y = reference[:, 1][:, None] + 0.5 * heights

    wx, wy, ww, wh = weights
    dx = deltas[..., 0] / wx
    dy = deltas[..., 1] / wy
    dw = deltas[..., 2] / ww
    dh = deltas[..., 3] / wh
    if scale_clamp is not None:
        dw = dw.clamp(max=scale_clamp)
        dh = dh.clamp(max=scale_clamp)

    pred_ctr_x = dx * widths + ctr_x
    pred_ctr_y = dy * heights + ctr_y
    half_w = 0.5 * torch.exp(dw) * widths
    half_h = 0.5 * torch.exp(dh) * heights
    boxes = torch.stack(
        (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h),
        dim=-1,
    )
    return boxes[:, 0] if squeeze else boxes
