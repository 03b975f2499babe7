"""A deploy threshold: precision, recall and F1 as functions of the score threshold, from
COCO's own matching.

A detection is a true positive when pycocotools' evaluation at IoU 0.5, area "all", at most
100 detections per image and category (``evalImgs``) matched it to a ground-truth box; a
detection matched to an ignored (crowd) box counts neither way, an unmatched one is a false
positive. Recall's denominator is the number of ground-truth boxes that are not ignored. A
threshold ``t`` keeps every detection with ``score >= t``; the curve has one point per
distinct score.

``best_f1`` is the threshold of the highest F1 (among equal F1s, the highest threshold; none
where no detection is a true positive);
``precision_target(p)`` the lowest threshold whose precision reaches ``p`` (the most recall
at that precision), None where none does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.evaluation.coco_metrics import check_results, run_cocoeval

IOU = 0.5
PRECISION_TARGETS = (0.9, 0.95)


@dataclass(frozen=True)
class ScoreCurve:
    """``precision[i]``, ``recall[i]`` and ``f1[i]`` of the detections with score >=
    ``thresholds[i]`` (thresholds descending); ``positives``: the non-ignored boxes."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    positives: int

    @classmethod
    def of(cls, scores: np.ndarray, true_positive: np.ndarray, positives: int) -> ScoreCurve:
        """The curve of counted detections (``scores`` and whether each is a true positive;
        ignored detections already left out) against ``positives`` ground-truth boxes."""
        order = np.argsort(-scores, kind="stable")
        scores, tp = scores[order], true_positive[order].astype(np.int64)
        tps, fps = np.cumsum(tp), np.cumsum(1 - tp)
        last = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)
        tps, fps, thresholds = tps[last], fps[last], scores[last]
        precision = tps / np.maximum(tps + fps, 1)
        recall = tps / positives if positives else np.zeros(len(tps))
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros(len(tps)), where=total > 0)
        return cls(thresholds, precision, recall, f1, positives)

    def point(self, i: int) -> dict[str, float]:
        return {
            "threshold": float(self.thresholds[i]),
            "precision": float(self.precision[i]),
            "recall": float(self.recall[i]),
            "f1": float(self.f1[i]),
        }

    def best_f1(self) -> dict[str, float] | None:
        """The point of the highest F1 (first in descending thresholds); None where no
        threshold keeps a true positive (no detection, or F1 0 everywhere)."""
        if not len(self.f1) or self.f1.max() <= 0:
            return None
        return self.point(int(np.argmax(self.f1)))

    def precision_target(self, target: float) -> dict[str, float] | None:
        reached = np.nonzero(self.precision >= target)[0]
        return self.point(int(reached[-1])) if len(reached) else None


@dataclass(frozen=True)
class MatchedDetections:
    """Per counted detection: its class index, score and whether it is a true positive; per
    class, the number of non-ignored ground-truth boxes."""

    classes: np.ndarray
    scores: np.ndarray
    true_positive: np.ndarray
    positives: np.ndarray


def coco_matches(evaluator: Any, num_classes: int) -> MatchedDetections:
    """The detections as pycocotools matched them (see the module docstring), from an
    evaluator (pycocotools' ``COCOeval``) that has run ``evaluate()``."""
    params = evaluator.params
    t = int(np.argmin(np.abs(np.asarray(params.iouThrs) - IOU)))
    all_area = [list(a) for a in params.areaRng].index([0, 1e5**2])
    category_index = {c: i for i, c in enumerate(sorted(params.catIds))}
    classes, scores, hits = [], [], []
    positives = np.zeros(num_classes, np.int64)
    per_area = len(params.areaRng) * len(params.imgIds)
    for c, category in enumerate(params.catIds):
        start = c * per_area + all_area * len(params.imgIds)
        for entry in evaluator.evalImgs[start : start + len(params.imgIds)]:
            if entry is None:
                continue
            positives[category_index[category]] += int((np.asarray(entry["gtIgnore"]) == 0).sum())
            matched = np.asarray(entry["dtMatches"])[t] > 0
            counted = ~np.asarray(entry["dtIgnore"], bool)[t]
            classes += [category_index[category]] * int(counted.sum())
            scores += np.asarray(entry["dtScores"])[counted].tolist()
            hits += matched[counted].tolist()
    return MatchedDetections(
        np.array(classes, np.int64), np.array(scores, np.float64), np.array(hits, bool), positives
    )


def score_curves(
    matches: MatchedDetections, names: list[str]
) -> tuple[ScoreCurve, dict[str, ScoreCurve]]:
    """The curve of all classes together and the curve of each class (by name)."""
    overall = ScoreCurve.of(matches.scores, matches.true_positive, int(matches.positives.sum()))
    per_class = {}
    for i, name in enumerate(names):
        mine = matches.classes == i
        per_class[name] = ScoreCurve.of(
            matches.scores[mine], matches.true_positive[mine], int(matches.positives[i])
        )
    return overall, per_class


def deploy_thresholds(matches: MatchedDetections, names: list[str]) -> dict[str, Any]:
    """``{"overall": point, "per_class": {name: point}, "precision_targets": {"0.9": point,
    ...}}`` (a point: threshold, precision, recall, F1; None where there is none)."""
    return curve_thresholds(*score_curves(matches, names))


def curve_thresholds(overall: ScoreCurve, per_class: dict[str, ScoreCurve]) -> dict[str, Any]:
    """:func:`deploy_thresholds` of the curves :func:`score_curves` gave."""
    return {
        "overall": overall.best_f1(),
        "per_class": {name: curve.best_f1() for name, curve in per_class.items()},
        "precision_targets": {f"{p:g}": overall.precision_target(p) for p in PRECISION_TARGETS},
    }


def thresholds_of_results(
    dataset: CocoDataset, results: np.ndarray, image_ids: list[int] | None = None
) -> dict[str, Any]:
    """:func:`deploy_thresholds` of ``results`` (M, 7) on ``dataset``'s images ``image_ids``
    (default: all), through pycocotools."""
    evaluated = sorted(i.id for i in dataset.images) if image_ids is None else sorted(image_ids)
    evaluator, _ = run_cocoeval(dataset, check_results(dataset, results), evaluated)
    matches = coco_matches(evaluator, len(dataset.classes))
    return deploy_thresholds(matches, list(dataset.classes.names))
