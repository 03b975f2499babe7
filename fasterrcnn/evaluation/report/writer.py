"""An evaluation report: every file of it, written into one folder.

``index.html`` (the page, self-contained), ``metrics.json``, ``thresholds.json``,
``confusion_matrix.json``, ``errors.json``, the figures ``pr_curves.png``, ``f1_curve.png``,
``confusion_matrix.png`` and ``error_kinds.png``, and ``worst/NN_<stem>.jpg``. The curves and
the deploy threshold come from pycocotools' own evaluation (run again with pycocotools when
the metrics came from another backend); the confusion matrix and the errors by kind are taken
at ``iou_threshold`` and at the deploy threshold unless ``score_threshold`` is given.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.evaluation.coco_metrics import (
    CocoMetrics,
    check_results,
    coco_evaluation,
    keeps_matches,
)
from fasterrcnn.evaluation.confusion import confusion_matrix
from fasterrcnn.evaluation.error_kinds import ERROR_KINDS, ErrorCounts, count_errors
from fasterrcnn.evaluation.report import plots
from fasterrcnn.evaluation.report.page import PageImage, ReportPage, write_page
from fasterrcnn.evaluation.report.worst_images import LEGEND, write_worst_images
from fasterrcnn.evaluation.thresholds import coco_matches, curve_thresholds, score_curves

logger = logging.getLogger("fasterrcnn")
FALLBACK_SCORE = 0.5  # the errors' score threshold where there is no deploy threshold
FIGURES = (
    ("pr_curves.png", "Precision-recall curves (pycocotools, area all, 100 detections)"),
    ("f1_curve.png", "Precision, recall and F1 by score threshold (IoU 0.5)"),
    ("confusion_matrix.png", "Confusion matrix (rows normalized)"),
    ("error_kinds.png", "False positives by kind and missed boxes, per class"),
)


class ReportError(ValueError):
    """A report that cannot be written (bad options, a folder that is a file or read-only)."""


@dataclass(frozen=True)
class ReportOptions:
    """Where a report goes and its thresholds: the confusion matrix's and the errors' IoU,
    their score threshold (None: the deploy threshold), and how many worst images to draw."""

    folder: Path
    iou_threshold: float = 0.5
    score_threshold: float | None = None
    images: int = 24

    def check(self) -> None:
        """A :class:`ReportError` naming the first bad option, or the folder's problem."""
        for name, value in (("iou", self.iou_threshold), ("score", self.score_threshold)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ReportError(f"the report's {name} threshold must be in [0, 1], not {value}")
        if self.images < 0:
            raise ReportError(f"the report's image count must be at least 0, not {self.images}")
        folder = Path(self.folder)
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
        if not existing.is_dir():
            raise ReportError(f"{folder}: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ReportError(f"{folder}: cannot write the report there (permission denied)")


@dataclass
class ReportSummary:
    """What a report holds: its page, the deploy threshold (None without a true positive), the
    score threshold of its matrix and errors, and one line per worst image not drawn."""

    page: Path
    deploy: dict[str, float] | None
    score_threshold: float
    skipped: list[str] = field(default_factory=list)

    def deploy_line(self) -> str:
        return deploy_line(self.deploy)


def deploy_line(point: dict[str, float] | None) -> str:
    """``"deploy threshold 0.62: precision 0.81, recall 0.74, F1 0.77"``."""
    if point is None:
        return "deploy threshold: none (no true positive)"
    return (f"deploy threshold {point['threshold']:.2f}: precision {point['precision']:.2f}, "
            f"recall {point['recall']:.2f}, F1 {point['f1']:.2f}")  # fmt: skip


def write_report(
    dataset: CocoDataset,
    results: np.ndarray,
    options: ReportOptions,
    *,
    image_ids: list[int] | None = None,
    evaluator: Any = None,
    metrics: CocoMetrics | None = None,
    title: str | None = None,
    progress: bool = True,
) -> ReportSummary:
    """Write the report of ``results`` (M, 7) on ``dataset``'s images ``image_ids`` (default:
    all) into ``options.folder``. ``evaluator`` and ``metrics``: pycocotools' accumulated
    evaluation of the same results and its metrics, when the caller has them."""
    options.check()
    plots.check_plotting()
    results = check_results(dataset, results)
    ids = sorted(i.id for i in dataset.images) if image_ids is None else sorted(image_ids)
    if metrics is None or not keeps_matches(evaluator):
        metrics, evaluator = coco_evaluation(dataset, results, ids, "pycocotools")
    folder = Path(options.folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(dataset.classes.names)
    matches = coco_matches(evaluator, len(names))
    overall, per_class = score_curves(matches, names)
    deploy = curve_thresholds(overall, per_class)
    score = options.score_threshold
    if score is None:
        score = FALLBACK_SCORE if deploy["overall"] is None else deploy["overall"]["threshold"]
    matrix = confusion_matrix(dataset, results, iou_threshold=options.iou_threshold,
                              score_threshold=score, image_ids=ids)  # fmt: skip
    errors = count_errors(dataset, results, score_threshold=score,
                          iou_threshold=options.iou_threshold, image_ids=ids)  # fmt: skip
    _write_json(folder / "metrics.json", metrics.to_dict())
    _write_json(folder / "thresholds.json", deploy)
    _write_json(folder / "errors.json", errors.to_dict())
    matrix.write(folder / "confusion_matrix.json")
    by_category = dict(zip(dataset.classes.category_ids, names, strict=True))
    curve_names = [by_category[c] for c in evaluator.params.catIds]
    instances = {c.name: c.instances for c in metrics.per_category}
    plots.plot_pr_curves(plots.pr_curves(evaluator), curve_names,
                         [instances[n] for n in curve_names], folder / "pr_curves.png")  # fmt: skip
    plots.plot_score_curves(overall, per_class, folder / "f1_curve.png", deploy["overall"])
    plots.plot_confusion_matrix(matrix, folder / "confusion_matrix.png")
    plots.plot_error_kinds(names, errors.counts, ERROR_KINDS, folder / "error_kinds.png")
    summary = ReportSummary(folder / "index.html", deploy["overall"], score)
    worst = errors.worst(options.images)
    drawn: list[PageImage] = []
    if worst and dataset.image_root is None:
        summary.skipped.append("report: no image folder, so the worst images are not drawn")
    elif worst:
        written = write_worst_images(dataset, worst, folder, progress=progress)
        drawn = [PageImage(image.file, image.caption) for image in written.drawn]
        summary.skipped += written.skipped
    page = ReportPage(
        title=title or f"Evaluation on {dataset.source}",
        summary=_summary_lines(metrics, summary, options, errors),
        stats=metrics.stats,
        plots=tuple(PageImage(file, text) for file, text in FIGURES),
        class_columns=CLASS_COLUMNS,
        class_rows=_class_rows(metrics, deploy["per_class"], errors),
        worst_images=tuple(drawn),
        legend=LEGEND,
    )
    write_page(page, folder)
    return summary


CLASS_COLUMNS = (
    "class", "instances", "AP", "AP50", "F1 threshold", "precision", "recall", "F1",
    "true positives", *(kind.replace("_", " ") for kind in ERROR_KINDS),
)  # fmt: skip


def _class_rows(
    metrics: CocoMetrics, best: dict[str, dict[str, float] | None], errors: ErrorCounts
) -> tuple[tuple[str | int | float | None, ...], ...]:
    index = {name: i for i, name in enumerate(errors.classes)}
    rows = []
    for category in metrics.per_category:
        point = best.get(category.name)
        i = index[category.name]
        rows.append((
            category.name, category.instances, category.ap, category.ap50,
            *(None if point is None else point[key]
              for key in ("threshold", "precision", "recall", "f1")),
            int(errors.true_positives[i]), *(int(n) for n in errors.counts[i]),
        ))  # fmt: skip
    return tuple(rows)


def _summary_lines(
    metrics: CocoMetrics, summary: ReportSummary, options: ReportOptions, errors: ErrorCounts
) -> tuple[str, ...]:
    totals = errors.counts.sum(axis=0)
    kinds = ", ".join(f"{int(n)} {kind.replace('_', ' ')}" for kind, n in
                      zip(ERROR_KINDS, totals, strict=True))  # fmt: skip
    return (
        f"{metrics.num_images} images, {metrics.num_detections} detections",
        summary.deploy_line(),
        f"confusion matrix and errors at IoU {options.iou_threshold:g} and score >= "
        f"{summary.score_threshold:.2f}: {int(errors.true_positives.sum())} true positives, "
        f"{kinds}",
        *summary.skipped,
    )


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1) + "\n")
