"""Matching our outputs against a reference implementation's, box by box."""

from __future__ import annotations

import numpy as np
import torch

from fasterrcnn.ops.boxes import box_iou


def ious(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy ``box`` with each of ``boxes`` (np.ndarray[N, 4]), in float64."""
    return box_iou(
        torch.as_tensor(box, dtype=torch.float64).reshape(1, 4),
        torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4),
    )[0].numpy()


def match_fraction(
    ref_boxes: np.ndarray,
    ref_scores: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    ref_labels: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    min_iou: float = 0.99,
    max_score_diff: float = 1e-3,
) -> float:
    """Fraction of reference boxes that have their own partner among ours (one-to-one):
    same label (when given), IoU >= ``min_iou`` and |score difference| <= ``max_score_diff``."""
    if len(ref_boxes) == 0:
        return 1.0 if len(boxes) == 0 else 0.0
    iou = box_iou(
        torch.as_tensor(ref_boxes, dtype=torch.float64), torch.as_tensor(boxes, dtype=torch.float64)
    ).numpy()
    ok = (iou >= min_iou) & (np.abs(ref_scores[:, None] - scores[None, :]) <= max_score_diff)
    if ref_labels is not None:
        assert labels is not None, "labels go with ref_labels"
        ok &= ref_labels[:, None] == labels[None, :]
    used = np.zeros(len(boxes), dtype=bool)
    matched = 0
    for i in range(len(ref_boxes)):
        candidates = np.flatnonzero(ok[i] & ~used)
        if candidates.size:
            used[candidates[np.argmax(iou[i, candidates])]] = True
            matched += 1
    return matched / len(ref_boxes)
