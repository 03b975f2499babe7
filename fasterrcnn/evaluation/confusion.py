"""The confusion matrix of a set of detections against a dataset, by one exact rule.

Per image, the detections with ``score >= score_threshold`` and all ground-truth boxes
(crowd / VOC ``difficult`` ones included) are paired:

1. every (ground truth, detection) pair whose IoU is at least ``iou_threshold``, whatever the
   two classes, is a candidate (plain intersection over union of the two boxes);
2. candidates are taken by descending IoU (ties: the detection of higher score first, then
   the detection and the box that come first), each box and each detection used at most once.

With ``K`` classes the matrix is ``(K + 1) x (K + 1)``: rows are the ground truth's class,
columns the detection's, index ``K`` is "background". A pair adds 1 at ``[gt class, det
class]``; a ground-truth box left unpaired adds 1 at ``[gt class, K]`` (missed); a detection
left unpaired adds 1 at ``[K, det class]`` (a false positive). A pair with a crowd box counts
nowhere (the detection fell on an ignored region), and an unpaired crowd box is not missed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.json_checks import DatasetError

BACKGROUND = "background"


@dataclass(frozen=True)
class ConfusionMatrix:
    """``matrix[i, j]``: how many boxes of class ``classes[i]`` were detected as
    ``classes[j]`` (the last of ``classes`` is "background"; see the module docstring)."""

    classes: tuple[str, ...]
    matrix: np.ndarray  # (K + 1, K + 1) int64
    iou_threshold: float
    score_threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "matrix": self.matrix.tolist(),
            "iou_threshold": self.iou_threshold,
            "score_threshold": self.score_threshold,
        }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [N, 4] with every box of ``b`` [M, 4], both (x, y, w, h):
    [N, M] float64 (0 where the union is empty)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    w = np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def pair_boxes(iou: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[tuple[int, int]]:
    """The (ground truth, detection) pairs of the rule, from the [G, D] ``iou`` matrix and the
    detections' ``scores`` [D]."""
    g, d = np.nonzero(iou >= iou_threshold)
    # Last key first: by descending IoU, then descending score, then detection, then box.
    order = np.lexsort((g, d, -scores[d], -iou[g, d]))
    used_gt: set[int] = set()
    used_det: set[int] = set()
    pairs = []
    for k in order:
        gt, det = int(g[k]), int(d[k])
        if gt not in used_gt and det not in used_det:
            used_gt.add(gt)
            used_det.add(det)
            pairs.append((gt, det))
    return pairs


def confusion_matrix(
    dataset: CocoDataset,
    results: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
    image_ids: list[int] | None = None,
) -> ConfusionMatrix:
    """The matrix of ``results`` (M, 7) ``[image_id, x, y, w, h, score, category_id]`` (the
    dataset's ids) on the images ``image_ids`` (default: all), by the module's rule."""
    for name, value in (("iou_threshold", iou_threshold), ("score_threshold", score_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], not {value}")
    classes = dataset.classes
    k = len(classes)
    index = {category_id: i for i, category_id in enumerate(classes.category_ids)}
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    results = np.asarray(results, dtype=np.float64).reshape(-1, 7)
    unknown = sorted(set(results[:, 6].astype(np.int64).tolist()) - set(index))
    if unknown:
        raise DatasetError(f"results name category ids that are not the dataset's: {unknown[:5]}")
    results = results[results[:, 5] >= score_threshold]
    by_image: dict[int, np.ndarray] = {}
    for image_id in np.unique(results[:, 0]).astype(np.int64).tolist():
        by_image[image_id] = results[results[:, 0] == image_id]
    ids = [image.id for image in dataset.images] if image_ids is None else image_ids
    for image_id in ids:
        annotations = dataset.annotations(image_id)
        dets = by_image.get(image_id, np.zeros((0, 7)))
        gt_boxes = np.array([a["bbox"] for a in annotations], np.float64).reshape(-1, 4)
        gt_class = [index[a["category_id"]] for a in annotations]
        crowd = [bool(a["iscrowd"]) for a in annotations]
        det_class = [index[int(c)] for c in dets[:, 6]]
        pairs = pair_boxes(box_iou_xywh(gt_boxes, dets[:, 1:5]), dets[:, 5], iou_threshold)
        for gt, det in pairs:
            if not crowd[gt]:
                matrix[gt_class[gt], det_class[det]] += 1
        paired_gt = {gt for gt, _ in pairs}
        paired_det = {det for _, det in pairs}
        for gt, cls in enumerate(gt_class):
            if gt not in paired_gt and not crowd[gt]:
                matrix[cls, k] += 1
        for det, cls in enumerate(det_class):
            if det not in paired_det:
                matrix[k, cls] += 1
    return ConfusionMatrix((*classes.names, BACKGROUND), matrix, iou_threshold, score_threshold)
