"""Merging the detections of overlapping tiles into one set per image (pure numpy).

Boxes are ``x1, y1, x2, y2`` float pixels of the full image. A tile box is *cut* when it
touches, within :data:`CUT_MARGIN` pixels, an edge of its tile that is not a border of the
image: the object goes on into the neighbouring tile, so the box holds only part of it.

Both merges are greedy, class by class, over the boxes in *priority order*: whole boxes
before cut ones, then by decreasing score (equal keys keep their input order). A box still
unclaimed when its turn comes is kept and claims the unclaimed boxes of its class that
overlap it enough (boxes that do not intersect never do):

- ``"nms"``: a claimed box is dropped. A whole box is claimed when its IoU with the kept box
  is above ``threshold`` (as the model's own NMS); a cut box when the fraction of its own
  area inside the kept box is above ``threshold`` (a fragment of a larger box has a small
  IoU with it, and would otherwise survive as a duplicate). So any kept whole box removes
  the cut boxes it covers, whatever their scores, and a cut box is kept only where no
  higher-priority box covers it.
- ``"nmm"`` (greedy non-maximum merging, SAHI's GREEDYNMM idea): a box is claimed when its
  intersection over the smaller of the two boxes (IoS) with the kept box is at least
  ``threshold``, overlaps being measured on the boxes as detected. The kept box becomes
  the smallest box enclosing itself and the boxes it claimed, with the highest of their
  scores. A small box inside a larger one of its class is merged into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

# A tile box this close (in pixels) to an inner edge of its tile is cut by that edge.
CUT_MARGIN = 2.0

MergeMethod = Literal["nms", "nmm"]

# Candidate pairs of boxes compared at a time (about 200 bytes of temporaries per pair).
PAIR_BLOCK = 1 << 16


def cut_mask(
    boxes: np.ndarray,
    window: Sequence[int] | np.ndarray,
    image_size: tuple[int, int],
    margin: float = CUT_MARGIN,
) -> np.ndarray:
    """Which tile boxes are cut by an inner edge of their tile.

    Args:
        boxes: (N, 4) ``x1, y1, x2, y2`` in the tile's own pixels.
        window: the tile ``x1, y1, x2, y2`` (exclusive ends) in image pixels.
        image_size: the image's (h, w).
        margin: how close to an edge, in pixels, a box side counts as touching it.

    Returns:
        (N,) bool: the box touches an edge of the tile that is not a border of the image.
    """
    x1, y1, x2, y2 = (int(v) for v in window)
    height, width = image_size
    cut = np.zeros(len(boxes), dtype=bool)
    if x1 > 0:
        cut |= boxes[:, 0] <= margin
    if y1 > 0:
        cut |= boxes[:, 1] <= margin
    if x2 < width:
        cut |= boxes[:, 2] >= (x2 - x1) - margin
    if y2 < height:
        cut |= boxes[:, 3] >= (y2 - y1) - margin
    return cut


def priority_order(scores: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """(N,) int64 indices: whole boxes first, then by decreasing score; ties keep input order."""
    return np.lexsort((-scores.astype(np.float64), cut.astype(bool)))


def merge_boxes(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    cut: np.ndarray,
    method: MergeMethod = "nms",
    threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy NMS or NMM (see the module docstring) of the boxes of one image, class-wise.

    Args:
        boxes: (N, 4) ``x1, y1, x2, y2`` in image pixels; scores: (N,); classes: (N,) integer
            class ids (boxes of different ids never interact); cut: (N,) bool cut boxes.
        method: ``"nms"`` or ``"nmm"``; threshold: the IoU (cut boxes: covered fraction) of
            NMS, or the IoS of NMM.

    Returns:
        ``keep`` (K,) int64 indices of the kept boxes, ``boxes`` (K, 4) float32 and
        ``scores`` (K,) float32 after merging, by decreasing score (ties in priority order).
    """
    if method not in ("nms", "nmm"):
        raise ValueError(f"merge must be 'nms' or 'nmm', not {method!r}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64)
    cut = np.asarray(cut, dtype=bool)
    classes = np.asarray(classes)
    order = priority_order(scores, cut)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    kept: list[int] = []
    merged_boxes: list[np.ndarray] = []
    merged_scores: list[float] = []
    for label in np.unique(classes):
        members = order[classes[order] == label]
        for keeper, claimed in _greedy(boxes[members], cut[members], method, threshold):
            group = members[[keeper, *claimed]]
            kept.append(int(members[keeper]))
            if method == "nmm":
                enclosing = np.concatenate([boxes[group, :2].min(0), boxes[group, 2:].max(0)])
                merged_boxes.append(enclosing)
                merged_scores.append(float(scores[group].max()))
            else:
                merged_boxes.append(boxes[members[keeper]])
                merged_scores.append(float(scores[members[keeper]]))
    keep = np.asarray(kept, dtype=np.int64)
    out_scores = np.asarray(merged_scores, dtype=np.float32)
    out_boxes = np.asarray(merged_boxes, dtype=np.float32).reshape(-1, 4)
    final = np.lexsort((rank[keep], -out_scores.astype(np.float64)))
    return keep[final], out_boxes[final], out_scores[final]


def _greedy(
    boxes: np.ndarray, cut: np.ndarray, method: MergeMethod, threshold: float
) -> list[tuple[int, list[int]]]:
    """(kept position, claimed positions) pairs of one class's boxes, given in priority order."""
    first, second = _claims(boxes, cut, method, threshold)
    by_first = np.argsort(first, kind="stable")
    first, second = first[by_first], second[by_first]
    bounds = np.searchsorted(first, np.arange(len(boxes) + 1))
    open_ = np.ones(len(boxes), dtype=bool)
    groups = []
    for i in range(len(boxes)):
        if open_[i]:
            candidates = second[bounds[i] : bounds[i + 1]]
            claimed = candidates[open_[candidates]]
            open_[claimed] = False
            groups.append((i, claimed.tolist()))
    return groups


def _claims(
    boxes: np.ndarray, cut: np.ndarray, method: MergeMethod, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``(a, b)``, ``a < b`` (``a`` first in priority), where ``a`` if kept claims
    ``b``: (P,) int64 each.

    Only boxes that intersect can claim each other, and boxes far apart on x are never
    compared: the boxes sorted by ``x1``, a box is paired with the later ones that start
    before it ends, in blocks of about :data:`PAIR_BLOCK` pairs (bounded memory).
    """
    n = len(boxes)
    by_x = np.argsort(boxes[:, 0], kind="stable")
    ends = np.searchsorted(boxes[by_x, 0], boxes[by_x, 2], side="left")
    counts = np.maximum(ends - np.arange(n) - 1, 0)
    total = np.cumsum(counts)
    cuts = np.searchsorted(total, np.arange(PAIR_BLOCK, int(total[-1]) if n else 0, PAIR_BLOCK))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    firsts, seconds = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for lo, hi in zip([0, *(cuts + 1)], [*(cuts + 1), n], strict=True):
        if hi <= lo:
            continue
        block = counts[lo:hi]
        p = np.repeat(np.arange(lo, hi), block)
        q = p + 1 + np.arange(len(p)) - np.repeat(np.cumsum(block) - block, block)
        a, b = np.minimum(by_x[p], by_x[q]), np.maximum(by_x[p], by_x[q])
        top_left = np.maximum(boxes[a, :2], boxes[b, :2])
        bottom_right = np.minimum(boxes[a, 2:], boxes[b, 2:])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        if method == "nms":
            iou = _ratio(inter, area[a] + area[b] - inter)
            claimed = np.where(cut[b], _ratio(inter, area[b]), iou) > threshold
        else:
            claimed = _ratio(inter, np.minimum(area[a], area[b])) >= threshold
        claimed &= inter > 0
        firsts.append(a[claimed])
        seconds.append(b[claimed])
    return np.concatenate(firsts), np.concatenate(seconds)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is not positive (empty boxes)."""
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out
