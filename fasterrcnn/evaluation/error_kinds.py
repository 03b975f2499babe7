"""A set of detections' errors, by kind (after TIDE), against a dataset, by one exact rule.

Per image, the detections with ``score >= score_threshold`` are taken by descending score
(ties: their order in the results). "IoU" with a non-crowd box is plain intersection over
union; with a crowd box (``iscrowd`` 1, VOC ``difficult``) it is intersection over the
detection's area (pycocotools' rule for crowd regions). For each detection, the first that
applies:

1. ``true_positive``: among the image's non-crowd boxes of the detection's class that are not
   yet matched, those with IoU >= ``iou_threshold``; the one of highest IoU (ties: the first
   in annotation order) becomes matched.
2. ``ignored``: a crowd box of its class with IoU (over the detection's area) >=
   ``iou_threshold``. Counts nowhere.
3. ``duplicate``: a non-crowd box of its class, already matched, with IoU >= ``iou_threshold``.
4. ``wrong_class``: a non-crowd box of another class with IoU >= ``iou_threshold``.
5. ``poor_localization``: a non-crowd box of its class with ``background_iou`` <= IoU <
   ``iou_threshold``.
6. ``background``: anything else (including a box of another class at ``background_iou`` <=
   IoU < ``iou_threshold``).

Non-crowd boxes left unmatched by step 1 are ``missed``, counted in their class's row. False
positives (steps 3 to 6) count in the detection's class's row; a crowd box is never missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.evaluation.confusion import box_iou_xywh

ERROR_KINDS = ("duplicate", "wrong_class", "poor_localization", "background", "missed")
FALSE_POSITIVE_KINDS = ERROR_KINDS[:4]
TRUE_POSITIVE, IGNORED = "true_positive", "ignored"

# The outcome of a detection as a code: 0 to 3 index FALSE_POSITIVE_KINDS.
_OUTCOMES = (*FALSE_POSITIVE_KINDS, TRUE_POSITIVE, IGNORED)
_TP_CODE, _IGNORED_CODE = 4, 5
_DUPLICATE, _WRONG_CLASS, _POOR, _BACKGROUND = range(4)
_MISSED = 4  # the column of ``missed`` in ErrorCounts.counts


@dataclass(frozen=True)
class ImageErrors:
    """One image's detections (score >= the threshold, by descending score; ties: results
    order), the outcome of each, and the indices into ``dataset.annotations(image_id)`` of
    the non-crowd boxes that no detection matched."""

    image_id: int
    detections: np.ndarray  # (D, 7) [image_id, x, y, w, h, score, category_id]
    outcomes: tuple[str, ...]  # per detection: TRUE_POSITIVE, IGNORED or a false positive kind
    missed: tuple[int, ...]

    @property
    def false_positives(self) -> int:
        """How many detections are one of FALSE_POSITIVE_KINDS."""
        return sum(outcome in FALSE_POSITIVE_KINDS for outcome in self.outcomes)

    @property
    def errors(self) -> int:
        """False positives plus missed boxes."""
        return self.false_positives + len(self.missed)


@dataclass(frozen=True)
class ErrorCounts:
    """``counts[i, j]``: how many errors of kind ``ERROR_KINDS[j]`` class ``classes[i]`` has
    (false positives by the detection's class, missed boxes by the box's class; see the
    module docstring); ``true_positives[i]``: its matched detections."""

    classes: tuple[str, ...]
    counts: np.ndarray  # (K, 5) int64, columns in ERROR_KINDS order
    true_positives: np.ndarray  # (K,) int64
    images: tuple[ImageErrors, ...]  # one per evaluated image, in the order of image_ids
    score_threshold: float
    iou_threshold: float
    background_iou: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts: per class (keyed by name) and in total, each
        ``{"true_positive": n, <kind>: n, ...}``. ValueError if two classes share a name."""
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("to_dict needs distinct class names; the dataset repeats one")

        def row(true_positives: int, counts: np.ndarray) -> dict[str, int]:
            kinds = {kind: int(n) for kind, n in zip(ERROR_KINDS, counts, strict=True)}
            return {TRUE_POSITIVE: int(true_positives), **kinds}

        return {
            "kinds": list(ERROR_KINDS),
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "background_iou": self.background_iou,
            "per_class": {
                name: row(self.true_positives[i], self.counts[i])
                for i, name in enumerate(self.classes)
            },
            "total": row(self.true_positives.sum(), self.counts.sum(axis=0)),
        }

    def worst(self, n: int) -> list[ImageErrors]:
        """Up to ``n`` images with at least one error, most errors first (ties: lower image
        id first)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        with_errors = [image for image in self.images if image.errors > 0]
        return sorted(with_errors, key=lambda image: (-image.errors, image.image_id))[:n]


def _intersection_over_detection(boxes: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """Intersection of every detection [D, 4] with every box [G, 4] (both x, y, w, h) over
    the detection's area: [D, G] float64 (0 for a detection of no area)."""
    dx2, dy2 = detections[:, 0] + detections[:, 2], detections[:, 1] + detections[:, 3]
    bx2, by2 = boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
    w = np.minimum(dx2[:, None], bx2[None]) - np.maximum(detections[:, None, 0], boxes[None, :, 0])
    h = np.minimum(dy2[:, None], by2[None]) - np.maximum(detections[:, None, 1], boxes[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area = np.broadcast_to((detections[:, 2] * detections[:, 3])[:, None], inter.shape)
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def _classify(
    dets: np.ndarray,
    gt_boxes: np.ndarray,
    gt_class: np.ndarray,
    crowd: np.ndarray,
    iou_threshold: float,
    background_iou: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Outcome codes [D] of the detections ``dets`` (by descending score) and the matched
    mask [G] of the boxes, by the module's rule."""
    iou = box_iou_xywh(dets[:, 1:5], gt_boxes)  # [D, G]
    iou[:, crowd] = _intersection_over_detection(gt_boxes[crowd], dets[:, 1:5])
    same = dets[:, 6, None] == gt_class[None]
    hit = iou >= iou_threshold
    own = same & ~crowd & hit  # step 1's candidates, whether matched yet or not
    matched = np.zeros(len(gt_boxes), dtype=bool)
    true_positive = np.zeros(len(dets), dtype=bool)
    ranked = np.where(own, iou, -1.0)
    for d in np.flatnonzero(own.any(axis=1)).tolist():
        row = np.where(matched, -1.0, ranked[d])
        best = int(np.argmax(row))  # the first of equal IoUs
        if row[best] >= 0:
            matched[best] = true_positive[d] = True
    # A detection that step 1 leaves with a candidate box found every candidate matched.
    conditions = [
        true_positive,
        (same & crowd & hit).any(axis=1),
        own.any(axis=1),
        (~same & ~crowd & hit).any(axis=1),
        (same & ~crowd & (iou >= background_iou)).any(axis=1),
    ]
    choices = [_TP_CODE, _IGNORED_CODE, _DUPLICATE, _WRONG_CLASS, _POOR]
    return np.select(conditions, choices, default=_BACKGROUND), matched


def count_errors(
    dataset: CocoDataset,
    results: np.ndarray,
    *,
    score_threshold: float,
    iou_threshold: float = 0.5,
    background_iou: float = 0.1,
    image_ids: list[int] | None = None,
) -> ErrorCounts:
    """The errors by kind of ``results`` (M, 7) ``[image_id, x, y, w, h, score,
    category_id]`` (the dataset's ids) on the images ``image_ids`` (default: all), by the
    module's rule."""
    for name, value in (
        ("score_threshold", score_threshold),
        ("iou_threshold", iou_threshold),
        ("background_iou", background_iou),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], not {value}")
    if background_iou > iou_threshold:
        raise ValueError(
            f"background_iou must be <= iou_threshold ({iou_threshold}), not {background_iou}"
        )
    classes = dataset.classes
    index = {category_id: i for i, category_id in enumerate(classes.category_ids)}
    results = np.asarray(results, dtype=np.float64).reshape(-1, 7)
    unknown = sorted(set(results[:, 6].astype(np.int64).tolist()) - set(index))
    if unknown:
        raise DatasetError(f"results name category ids that are not the dataset's: {unknown[:5]}")
    results = results[results[:, 5] >= score_threshold]
    # By image, then descending score, then results order (lexsort: last key first).
    results = results[np.lexsort((np.arange(len(results)), -results[:, 5], results[:, 0]))]
    ids = [image.id for image in dataset.images] if image_ids is None else image_ids
    starts = np.searchsorted(results[:, 0], ids, side="left").tolist()
    ends = np.searchsorted(results[:, 0], ids, side="right").tolist()
    counts = np.zeros((len(classes), len(ERROR_KINDS)), dtype=np.int64)
    true_positives = np.zeros(len(classes), dtype=np.int64)
    images = []
    for image_id, start, end in zip(ids, starts, ends, strict=True):
        annotations = dataset.annotations(image_id)
        dets = results[start:end]
        gt_boxes = np.array([a["bbox"] for a in annotations], np.float64).reshape(-1, 4)
        gt_class = np.array([a["category_id"] for a in annotations], np.float64)
        crowd = np.array([bool(a["iscrowd"]) for a in annotations], dtype=bool)
        codes, matched = _classify(dets, gt_boxes, gt_class, crowd, iou_threshold, background_iou)
        det_row = np.array([index[int(c)] for c in dets[:, 6]], dtype=np.int64)
        gt_row = np.array([index[int(c)] for c in gt_class], dtype=np.int64)
        fp = codes < _TP_CODE
        np.add.at(counts, (det_row[fp], codes[fp]), 1)
        true_positives += np.bincount(det_row[codes == _TP_CODE], minlength=len(classes))
        missed = np.flatnonzero(~matched & ~crowd)
        counts[:, _MISSED] += np.bincount(gt_row[missed], minlength=len(classes))
        outcomes = tuple(_OUTCOMES[code] for code in codes.tolist())
        images.append(ImageErrors(image_id, dets, outcomes, tuple(missed.tolist())))
    return ErrorCounts(
        tuple(classes.names),
        counts,
        true_positives,
        tuple(images),
        score_threshold,
        iou_threshold,
        background_iou,
    )
