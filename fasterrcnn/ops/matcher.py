"""Match anchors (or proposals) to ground-truth boxes by IoU, for the training targets.

Every column of an IoU matrix (one anchor or proposal) is matched to the ground-truth box it
overlaps most and labelled foreground, background or ignore by thresholds on that IoU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

FOREGROUND, BACKGROUND, IGNORE = 1, 0, -1


@dataclass(frozen=True)
class MatchResult:
    """The match of every column of a ``Tensor[G, A]`` IoU matrix.

    ``matches``: Tensor[A] int64, the index of the ground-truth box with the highest IoU (the
    lowest index among equal ones; 0 where there is no ground truth). ``labels``: Tensor[A]
    int64, :data:`FOREGROUND` (1), :data:`BACKGROUND` (0) or :data:`IGNORE` (-1).
    ``max_iou``: Tensor[A], the IoU with the matched box (0 where there is no ground truth).
    """

    matches: Tensor
    labels: Tensor
    max_iou: Tensor


def match_boxes(
    iou: Tensor,
    fg_threshold: float,
    bg_threshold: float,
    *,
    bg_low: float = 0.0,
    allow_low_quality: bool = False,
) -> MatchResult:
    """Match each column of ``iou`` to its best ground truth and label it by thresholds.

    With ``m`` the column's highest IoU: foreground if ``m >= fg_threshold``, background if
    ``bg_low <= m < bg_threshold``, ignore otherwise (``fg_threshold == bg_threshold`` leaves
    no ignore band above ``bg_low``).

    With ``allow_low_quality`` every ground truth also makes foreground each column whose IoU
    with it equals its highest IoU over all columns (exact float equality, so all tied columns).
    Such a column keeps its own best match: a column that is ground truth A's best but overlaps
    ground truth B more stays matched to B (as in torchvision, detectron2 and MegEngine). A
    ground truth whose highest IoU is 0 makes no such match (torchvision and detectron2 would
    then make every column that does not touch it foreground).

    With no ground truth (``G == 0``) every column is background, whatever ``bg_low``.

    Args:
        iou: Tensor[G, A] float, ground truths x anchors (or proposals); no NaN.
        fg_threshold: lowest IoU of a foreground column.
        bg_threshold: background columns have an IoU below this.
        bg_low: background columns have an IoU of at least this.
        allow_low_quality: add each ground truth's best columns to the foreground.

    Returns:
        :class:`MatchResult` with Tensor[A] fields on ``iou``'s device.
    """
    if not 0.0 <= bg_low <= bg_threshold <= fg_threshold <= 1.0:
        raise ValueError(
            "match_boxes needs 0 <= bg_low <= bg_threshold <= fg_threshold <= 1, got "
            f"bg_low={bg_low}, bg_threshold={bg_threshold}, fg_threshold={fg_threshold}"
        )
    if iou.dim() != 2:
        raise ValueError(f"match_boxes needs an IoU matrix Tensor[G, A], not {tuple(iou.shape)}")
    if not iou.is_floating_point():
        raise ValueError(f"match_boxes needs a floating-point IoU matrix, not {iou.dtype}")
    num_gt, num_cols = iou.shape
    if num_gt == 0 or num_cols == 0:
        zeros = torch.zeros(num_cols, dtype=torch.int64, device=iou.device)
        return MatchResult(zeros, zeros.clone(), iou.new_zeros(num_cols))
    if bool(torch.isnan(iou).any()):
        raise ValueError("match_boxes got NaN in the IoU matrix")

    max_iou = iou.max(dim=0).values
    matches = _first_index_of_max(iou, max_iou)

    labels = torch.full((num_cols,), IGNORE, dtype=torch.int64, device=iou.device)
    labels[(max_iou >= bg_low) & (max_iou < bg_threshold)] = BACKGROUND
    labels[max_iou >= fg_threshold] = FOREGROUND
    if allow_low_quality:
        best_per_gt = iou.max(dim=1, keepdim=True).values
        is_best = (iou == best_per_gt) & (best_per_gt > 0)
        labels[is_best.any(dim=0)] = FOREGROUND
    return MatchResult(matches, labels, max_iou)


def _first_index_of_max(iou: Tensor, max_iou: Tensor) -> Tensor:
    """Tensor[A] int64: per column, the lowest row index whose value equals ``max_iou``.

    Written out rather than taken from ``torch.max`` so that ties resolve the same way on
    every device.
    """
    num_gt = iou.shape[0]
    rows = torch.arange(num_gt, device=iou.device)[:, None].expand_as(iou)
    return torch.where(iou == max_iou[None, :], rows, num_gt).min(dim=0).values
