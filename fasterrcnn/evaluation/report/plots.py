"""The evaluation report's figures, one PNG each: precision / recall curves (pycocotools' own
``eval["precision"]``, never recomputed), the confusion matrix, precision, recall and F1
against the score threshold, and the errors by kind.

matplotlib is optional (``pip install matplotlib``); it is imported when a figure is drawn and
drawn through its Agg canvas, without pyplot, so no window or display is ever needed.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fasterrcnn.evaluation.confusion import ConfusionMatrix
from fasterrcnn.evaluation.thresholds import ScoreCurve

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100  # figure sizes are in inches (pixels: inches * DPI); see also confusion_figsize
PR_FIGSIZE = (18.0, 9.0)
SCORE_FIGSIZE = (12.0, 6.0)
ERRORS_FIGSIZE = (15.0, 8.0)
CONFUSION_LARGEST = 24.0  # inches a side
MISSING_MATPLOTLIB = "the evaluation report's plots need matplotlib: pip install matplotlib"


def check_plotting() -> None:
    """ImportError (one line naming ``pip install matplotlib``) when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError(MISSING_MATPLOTLIB)


def _figure(figsize: tuple[float, float]) -> Figure:
    try:
        import matplotlib.backends.backend_agg
        import matplotlib.figure
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB) from None
    figure = matplotlib.figure.Figure(figsize=figsize, dpi=DPI)
    matplotlib.backends.backend_agg.FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    figure.savefig(path, format="png", dpi=DPI)
    return Path(path)


def _note(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, fontsize=12)


def _mean(values: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    """The mean of the values that are not NaN along ``axis``; NaN where there are none."""
    count = np.sum(~np.isnan(values), axis=axis)
    total = np.nansum(values, axis=axis)
    return np.divide(total, count, out=np.full(np.shape(total), np.nan), where=count > 0)


@dataclass(frozen=True)
class PrCurves:
    """Precision at the recall points ``recall`` (R,), area "all", 100 detections: the mean
    over the categories with ground truth at IoU 0.5 (``mean_50``) and over IoUs 0.5:0.95
    (``mean_50_95``), NaN where none has any; ``per_class_50`` (K, R) each category's at IoU
    0.5, NaN where it has none; categories in ``category_ids`` (the evaluator's) order."""

    recall: np.ndarray
    mean_50: np.ndarray
    mean_50_95: np.ndarray
    per_class_50: np.ndarray
    category_ids: tuple[int, ...]

    @property
    def ap50(self) -> float:
        """The mean of ``mean_50`` over recall: pycocotools' AP50 (NaN without ground truth)."""
        return float(_mean(self.mean_50, 0))

    @property
    def ap(self) -> float:
        """The mean of ``mean_50_95`` over recall: pycocotools' AP (NaN without ground truth)."""
        return float(_mean(self.mean_50_95, 0))


def pr_curves(evaluator: Any) -> PrCurves:
    """The curves of an accumulated COCOeval (pycocotools' or faster-coco-eval's), read from
    its ``eval["precision"]`` [IoU, recall, category, area, max detections], where -1 marks
    a category without ground truth."""
    params = evaluator.params
    area = list(params.areaRngLbl).index("all")
    max_dets = list(params.maxDets).index(100)
    iou50 = int(np.argmin(np.abs(np.asarray(params.iouThrs, np.float64) - 0.5)))
    precision = np.asarray(evaluator.eval["precision"], np.float64)[:, :, :, area, max_dets]
    precision = np.where(precision > -1, precision, np.nan)  # (T, R, K); a copy
    return PrCurves(
        recall=np.asarray(params.recThrs, np.float64),
        mean_50=_mean(precision[iou50], 1),
        mean_50_95=_mean(precision, (0, 2)),
        per_class_50=precision[iou50].T.copy(),
        category_ids=tuple(int(c) for c in params.catIds),
    )


def plot_pr_curves(
    curves: PrCurves, names: Sequence[str], instances: Sequence[int], path: str | Path,
    top: int = 12,
) -> Path:  # fmt: skip
    """Write the mean curves (labelled with their AP50 and AP) and the curves of the ``top``
    classes with the most ground-truth ``instances`` (``names`` and ``instances`` in
    ``curves.category_ids`` order) to ``path``: a PNG of PR_FIGSIZE * DPI pixels."""
    classes = len(curves.category_ids)
    if len(names) != classes or len(instances) != classes:
        raise ValueError(f"names and instances must have {classes} entries, one per category")
    counts = np.asarray(instances, np.int64)
    chosen = [int(k) for k in np.argsort(-counts, kind="stable")[: max(top, 0)] if counts[k]]
    figure = _figure(PR_FIGSIZE)
    outer = figure.add_gridspec(1, 2, width_ratios=(1.0, 1.4), left=0.04, right=0.99,
                                bottom=0.06, top=0.93, wspace=0.12)  # fmt: skip
    main = figure.add_subplot(outer[0])
    with_truth = int(np.sum(~np.isnan(curves.per_class_50).all(axis=1)))
    main.set_title(f"precision / recall, mean over {with_truth} classes with ground truth")
    if with_truth:
        main.plot(curves.recall, curves.mean_50, color="C0", linewidth=2,
                  label=f"IoU 0.5: AP50 {100 * curves.ap50:.1f}")  # fmt: skip
        main.plot(curves.recall, curves.mean_50_95, color="C1", linewidth=2,
                  label=f"IoU 0.5:0.95: AP {100 * curves.ap:.1f}")  # fmt: skip
        main.legend(loc="lower left")
    else:
        _note(main, "no ground truth")
    _unit_axes(main, "recall", "precision")
    columns = min(len(chosen), 4) or 1
    rows = max(1, math.ceil(len(chosen) / columns))
    grid = outer[1].subgridspec(rows, columns, hspace=0.45, wspace=0.25)
    ap50 = _mean(curves.per_class_50, 1)  # each class's AP50
    for i, k in enumerate(chosen):
        axes = figure.add_subplot(grid[i // columns, i % columns])
        axes.fill_between(curves.recall, curves.per_class_50[k], color="C0", alpha=0.15)
        axes.plot(curves.recall, curves.per_class_50[k], color="C0")
        ap = "no ground truth" if np.isnan(ap50[k]) else f"AP50 {100 * ap50[k]:.1f}"
        axes.set_title(f"{names[k]} ({counts[k]}): {ap}", fontsize=9)
        _unit_axes(axes)
        axes.set(xticks=(0.0, 0.5, 1.0), yticks=(0.0, 0.5, 1.0))  # few: ticks are slow
        axes.tick_params(labelsize=7)
    if not chosen:
        _note(figure.add_subplot(grid[0, 0]), "no class with ground truth")
    return _save(figure, path)


def _unit_axes(axes: Axes, xlabel: str = "", ylabel: str = "") -> None:
    axes.set(xlim=(0.0, 1.0), ylim=(0.0, 1.02), xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)


def shown_classes(matrix: ConfusionMatrix) -> list[int]:
    """The indices of the classes whose row or column counts anything, and of background."""
    counts = np.asarray(matrix.matrix)
    used = (counts.sum(axis=0) + counts.sum(axis=1)) > 0
    return [int(i) for i in np.nonzero(used)[0] if i < len(used) - 1] + [len(used) - 1]


def row_normalized(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` as float64 with each row divided by its sum (rows summing to 0 stay 0)."""
    values = np.asarray(matrix, np.float64)
    sums = values.sum(axis=1, keepdims=True)
    return np.divide(values, sums, out=np.zeros_like(values), where=sums > 0)


def confusion_figsize(shown: int) -> tuple[float, float]:
    """The confusion figure's inches for ``shown`` classes: half inches, 7 to CONFUSION_LARGEST."""
    side = min(CONFUSION_LARGEST, max(7.0, math.ceil(2 * (3.5 + 0.2 * shown)) / 2))
    return side, side


def plot_confusion_matrix(
    matrix: ConfusionMatrix, path: str | Path, annotate_up_to: int = 30
) -> Path:
    """Write the row-normalized matrix of the :func:`shown_classes` (colour: the fraction of
    the ground-truth row; the non-zero counts written in the cells when at most
    ``annotate_up_to`` classes are shown) to ``path``, a PNG of confusion_figsize * DPI."""
    shown = shown_classes(matrix)
    counts = np.asarray(matrix.matrix)[np.ix_(shown, shown)]
    fractions = row_normalized(counts)
    names = [matrix.classes[i] for i in shown]
    n = len(shown)
    side, _ = confusion_figsize(n)
    figure = _figure((side, side))
    # Margins in inches: the class names left and below, the colour bar right.
    figure.subplots_adjust(left=1.6 / side, right=1 - 0.9 / side, bottom=1.6 / side,
                           top=1 - 0.7 / side)  # fmt: skip
    axes = figure.add_subplot()
    # Coloured per cell, then scaled: much faster than colouring every pixel.
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest",
                        interpolation_stage="rgba")  # fmt: skip
    figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02, label="fraction of the row")
    size = max(5.0, min(10.0, 40 * side / n))  # points: about half a cell
    # The names as plain texts beside the rows and below the columns (much faster to draw
    # than as many ticks), the axis names at the far edges of the 1.6 in margins.
    axes.set(xticks=[], yticks=[])
    below, left = axes.get_xaxis_transform(), axes.get_yaxis_transform()
    for i, name in enumerate(names):
        axes.text(i, -0.004, name, rotation=90, ha="center", va="top", fontsize=size,
                  transform=below)  # fmt: skip
        axes.text(-0.004, i, name, ha="right", va="center", fontsize=size, transform=left)
    for xy, offset, text, rotation in (((0.5, 0), (0, -100), "detected", 0),
                                       ((0, 0.5), (-100, 0), "ground truth", 90)):  # fmt: skip
        axes.annotate(text, xy, xytext=offset, xycoords="axes fraction", rotation=rotation,
                      textcoords="offset points", ha="center", va="center")  # fmt: skip
    at = f"IoU >= {matrix.iou_threshold:g}, score >= {matrix.score_threshold:g}"
    shown_of = f"{n - 1} of {len(matrix.classes) - 1} classes shown"
    axes.set_title(f"confusion matrix at {at}\n{shown_of}", y=1.0)  # fixed y: no layout pass
    if n <= annotate_up_to:
        for i, j in zip(*np.nonzero(counts), strict=True):
            axes.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=size - 1,
                      color="white" if fractions[i, j] > 0.5 else "black")  # fmt: skip
    return _save(figure, path)


def _thinned(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most 2000 evenly spaced points of a curve, its ends kept: as many as can be seen."""
    keep = np.unique(np.linspace(0, len(x) - 1, min(len(x), 2000)).round().astype(np.int64))
    return x[keep], y[keep]


def plot_score_curves(
    overall: ScoreCurve, per_class: dict[str, ScoreCurve], path: str | Path,
    best: dict[str, float] | None = None,
) -> Path:  # fmt: skip
    """Write precision, recall and F1 of all classes together against the score threshold,
    each class's F1 faintly, and a line at ``best`` (the deploy point; default: the overall
    curve's best F1, none where it has no point) to ``path``: a PNG of SCORE_FIGSIZE * DPI."""
    figure = _figure(SCORE_FIGSIZE)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.92)
    axes = figure.add_subplot()
    nan = np.array([np.nan])  # one line for every class: NaN between them
    thinned = [_thinned(c.thresholds, c.f1) for c in per_class.values() if len(c.f1)]
    if thinned:
        axes.plot(np.concatenate([v for x, _ in thinned for v in (x, nan)]),
                  np.concatenate([v for _, y in thinned for v in (y, nan)]), color="#7f7f7f",
                  alpha=0.3, linewidth=0.7, label="F1 of each class")  # fmt: skip
    for name, values in {"precision": overall.precision, "recall": overall.recall,
                         "F1": overall.f1}.items():  # fmt: skip
        axes.plot(*_thinned(overall.thresholds, values), linewidth=2, label=name)
    if not len(overall.thresholds):
        _note(axes, "no detections")
    point = overall.best_f1() if best is None else best
    if point is not None:
        axes.axvline(point["threshold"], color="#d62728", linestyle="--",
                     label=f"deploy threshold {point['threshold']:.2f}")  # fmt: skip
    axes.legend(loc="lower left")
    _unit_axes(axes, "score threshold", "precision, recall, F1")
    axes.set_title(f"precision, recall and F1 against the score threshold "
                   f"({overall.positives} ground-truth boxes)")  # fmt: skip
    return _save(figure, path)


def plot_error_kinds(
    classes: Sequence[str], counts: np.ndarray, kinds: Sequence[str], path: str | Path,
    top: int = 20,
) -> Path:  # fmt: skip
    """Write the errors of the ``top`` classes with the most (``counts`` (K, len(kinds)), a
    stacked bar each, one colour per kind) and the total of each kind to ``path``: a PNG of
    ERRORS_FIGSIZE * DPI pixels."""
    counts = np.asarray(counts, np.int64).reshape(-1, len(kinds))
    if len(counts) != len(classes):
        raise ValueError(f"counts has {len(counts)} rows, not one per class ({len(classes)})")
    totals = counts.sum(axis=1)
    chosen = [int(k) for k in np.argsort(-totals, kind="stable")[: max(top, 0)] if totals[k]]
    labels = [kind.replace("_", " ") for kind in kinds]
    colors = [f"C{i % 10}" for i in range(len(kinds))]  # matplotlib's 10 default colours
    figure = _figure(ERRORS_FIGSIZE)
    grid = figure.add_gridspec(1, 2, width_ratios=(3.0, 1.0), left=0.13, right=0.98,
                               bottom=0.16, top=0.93, wspace=0.25)  # fmt: skip
    bars = figure.add_subplot(grid[0])
    bars.set(title=f"errors by kind: the {len(chosen)} classes with the most", xlabel="errors")
    if chosen:
        left = np.cumsum(counts[chosen], axis=1) - counts[chosen]  # stacked, kind by kind
        for j, label in enumerate(labels):
            bars.barh(range(len(chosen)), counts[chosen, j], left=left[:, j], color=colors[j],
                      label=label)  # fmt: skip
        bars.set_yticks(range(len(chosen)), [classes[k] for k in chosen],
                        fontsize=max(6.0, min(10.0, 300 / len(chosen))))  # fmt: skip
        bars.invert_yaxis()  # the most errors on top
        bars.legend(loc="lower right")
    else:
        bars.set(yticks=[])
        _note(bars, "no errors")
    kind_totals = figure.add_subplot(grid[1])
    drawn = kind_totals.bar(range(len(kinds)), counts.sum(axis=0), color=colors)
    kind_totals.bar_label(drawn, fontsize=8)
    kind_totals.set_xticks(range(len(kinds)), labels, rotation=45, ha="right", fontsize=9)
    kind_totals.set(title=f"all classes: {int(totals.sum())} errors", ylim=(0, None))
    return _save(figure, path)
