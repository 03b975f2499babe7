"""Batched NMS in the forms an exported graph needs, with the eager contract of
:func:`fasterrcnn.ops.nms.batched_nms` (kept indices, decreasing score, ties in input order):

- :func:`onnx_batched_nms`: ONNX's ``NonMaxSuppression``. The flat boxes are laid out as one
  padded row per group (``[G, S, 4]`` boxes, ``[G, 1, S]`` scores, padding scored -inf and
  cut by the score threshold), so each group is its own batch entry and nothing is shifted.
- :func:`scripted_batched_nms`: a TorchScript function (loops kept in the traced graph), exact
  greedy NMS group by group, for ``torch.jit.trace``.

Both suppress a box whose IoU with a kept, higher-scored box of its group is ``> threshold``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fasterrcnn.ops.groups import sort_by_group
from fasterrcnn.ops.shapes import as_size


def _greedy_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    # Group by group, best first within each; ties by input index.
    by_score = torch.sort(scores, descending=True, stable=True).indices
    order = by_score[torch.sort(groups[by_score], stable=True).indices]
    sorted_boxes = boxes[order]
    sorted_groups = groups[order]
    starts = torch.nonzero(
        torch.cat([torch.ones(1, dtype=torch.bool), sorted_groups[1:] != sorted_groups[:-1]])
    ).flatten()
    ends = torch.cat([starts[1:], torch.tensor([order.shape[0]])])
    kept: list[int] = []
    for block in range(starts.shape[0]):
        start = int(starts[block])
        end = int(ends[block])
        b = sorted_boxes[start:end]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        top_left = torch.maximum(b[:, None, :2], b[None, :, :2])
        bottom_right = torch.minimum(b[:, None, 2:], b[None, :, 2:])
        wh = (bottom_right - top_left).clamp(min=0)
        inter = wh[:, :, 0] * wh[:, :, 1]
        union = area[:, None] + area[None, :] - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1.1754943508222875e-38), 0.0)
        overlaps = iou > iou_threshold
        removed = torch.zeros(end - start, dtype=torch.bool)
        for i in range(end - start):
            if not bool(removed[i]):
                kept.append(start + i)
                removed = removed | overlaps[i]
    keep = torch.sort(order[torch.tensor(kept, dtype=torch.int64)]).values
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]


_scripted_greedy_nms = None


def scripted_batched_nms(
    boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float
) -> Tensor:
    """Exact greedy NMS per group, as a TorchScript function call (CPU)."""
    global _scripted_greedy_nms
    if _scripted_greedy_nms is None:
        _scripted_greedy_nms = torch.jit.script(_greedy_nms)
    return _scripted_greedy_nms(boxes, scores, groups, iou_threshold)


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` on ``boxes`` [B, S, 4] and ``scores`` [B, G, S] ->
    selected ``(batch, group, index)`` rows [K, 3] int64 (run eagerly while tracing)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: object, boxes: Tensor, scores: Tensor, iou_threshold: Tensor, score_threshold: Tensor
    ) -> Tensor:
        g = scores.shape[1]
        batch, group, index = torch.nonzero(scores > score_threshold, as_tuple=True)
        keep = _greedy_nms(
            boxes[batch, index],
            scores[batch, group, index],
            batch * g + group,
            float(iou_threshold),
        )
        return torch.stack([batch[keep], group[keep], index[keep]], dim=1)

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold, score_threshold):  # type: ignore[no-untyped-def]
        max_per_group = g.op("Constant", value_t=torch.tensor([2**31 - 1], dtype=torch.int64))
        return g.op(
            "NonMaxSuppression", boxes, scores, max_per_group, iou_threshold, score_threshold
        )


def onnx_batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """:func:`~fasterrcnn.ops.nms.batched_nms` through ONNX ``NonMaxSuppression``."""
    groups = groups.to(torch.int64)
    num_groups = torch.cat([groups, groups.new_zeros(1)]).max() + 1
    by_group, counts, starts, rank = sort_by_group(groups, num_groups)
    sorted_groups = groups[by_group]
    width = torch.cat([counts, counts.new_zeros(1)]).max()
    padded_boxes = boxes.new_zeros((as_size(num_groups), as_size(width), 4))
    padded_boxes = padded_boxes.index_put((sorted_groups, rank), boxes[by_group])
    padded_scores = torch.full(
        (as_size(num_groups), as_size(width)), float("-inf"), dtype=scores.dtype
    )
    padded_scores = padded_scores.index_put((sorted_groups, rank), scores[by_group])
    selected = _NonMaxSuppression.apply(
        padded_boxes,
        padded_scores[:, None, :],
        torch.tensor([iou_threshold], dtype=torch.float32),
        torch.tensor([-3.4e38], dtype=torch.float32),
    )
    keep = by_group[starts[selected[:, 0]] + selected[:, 2]]
    keep = torch.topk(keep, keep.shape[0], largest=False).values  # input order
    # ONNX TopK puts equal values in index order: ties keep the input order.
    return keep[torch.topk(scores[keep], keep.shape[0]).indices]
