"""The report's figures: the precision / recall curves read back against pycocotools' own AP50,
AP and per-category AP50 (the mini COCO set with perturbed detections, and a hand-built case
with a category without ground truth), the confusion matrix's helpers by hand, and every
figure writer's PNG (its pixel size, empty inputs, matplotlib missing)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from helpers.seeded import DATA

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.evaluation.coco_metrics import evaluate_results, run_cocoeval
from fasterrcnn.evaluation.confusion import ConfusionMatrix, confusion_matrix
from fasterrcnn.evaluation.report import plots
from fasterrcnn.evaluation.report.plots import (
    DPI,
    ERRORS_FIGSIZE,
    PR_FIGSIZE,
    SCORE_FIGSIZE,
    confusion_figsize,
    pr_curves,
    row_normalized,
    shown_classes,
)
from fasterrcnn.evaluation.thresholds import ScoreCurve, coco_matches, score_curves

KINDS = ("duplicate", "wrong_class", "poor_localization", "background", "missed")


def _perturbed_results(dataset: CocoDataset) -> np.ndarray:
    """Most boxes found, jittered, some as another class, and two false positives an image."""
    rng = np.random.default_rng(7)
    ids = np.array(dataset.classes.category_ids)
    rows = []
    for image in dataset.images:
        for a in dataset.annotations(image.id):
            if rng.random() < 0.85:
                x, y, w, h = a["bbox"]
                dx, dy, dw, dh = rng.normal(0, 0.15, 4) * [w, h, w, h]
                right = rng.random() < 0.85
                category = a["category_id"] if right else rng.choice(ids)
                score = rng.uniform(0.3, 1.0) if right else rng.uniform(0.0, 0.7)
                rows.append([image.id, x + dx, y + dy, abs(w + dw) + 1, abs(h + dh) + 1,
                             score, category])  # fmt: skip
        for _ in range(2):
            rows.append([image.id, *rng.uniform(0, 300, 2), *rng.uniform(5, 100, 2),
                         rng.uniform(0.0, 0.7), rng.choice(ids)])  # fmt: skip
    return np.array(rows)


@pytest.fixture(scope="module")
def mini() -> SimpleNamespace:
    dataset = CocoDataset.load(DATA / "coco_mini" / "instances_val2017_boxes.json")
    results = _perturbed_results(dataset)
    image_ids = sorted(image.id for image in dataset.images)
    evaluator, _ = run_cocoeval(dataset, results, image_ids)
    metrics = evaluate_results(dataset, results)
    return SimpleNamespace(dataset=dataset, results=results, evaluator=evaluator, metrics=metrics)


@pytest.fixture
def matplotlib_installed() -> None:
    pytest.importorskip("matplotlib")


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG that decodes and is drawn (not one flat colour)."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None
    b, g, r = image[::2, ::2].astype(np.int64).transpose(2, 0, 1)
    assert len(np.unique(b << 16 | g << 8 | r)) > 10
    return image.shape[1], image.shape[0]


def _pixels(figsize: tuple[float, float]) -> tuple[int, int]:
    return round(figsize[0] * DPI), round(figsize[1] * DPI)


def test_pr_curves_are_pycocotools_own(mini) -> None:
    curves = pr_curves(mini.evaluator)
    stats = mini.evaluator.stats
    assert 0.3 < stats[1] < 0.95  # a real, non-trivial evaluation
    assert abs(np.mean(curves.mean_50) - stats[1]) < 1e-12
    assert abs(np.mean(curves.mean_50_95) - stats[0]) < 1e-12
    assert (curves.ap50, curves.ap) == pytest.approx((stats[1], stats[0]), abs=1e-12)
    np.testing.assert_array_equal(curves.recall, np.linspace(0, 1, 101))
    assert curves.category_ids == tuple(mini.dataset.classes.category_ids)
    assert curves.per_class_50.shape == (80, 101)
    without = 0
    for row, category in zip(curves.per_class_50, mini.metrics.per_category, strict=True):
        if category.ap50 is None:
            without += 1
            assert np.isnan(row).all(), category.name
        else:
            assert not np.isnan(row).any()
            assert abs(row.mean() - category.ap50) < 1e-12, category.name
    assert without == 1  # the mini set has ground truth for 79 of the 80 categories


def test_pr_curves_of_a_category_without_ground_truth() -> None:
    dataset = CocoDataset.load({
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
            {"image_id": 2, "category_id": 1, "bbox": [10, 10, 20, 20]},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    })  # fmt: skip
    results = np.array([
        [1, 10, 10, 20, 20, 0.9, 1],  # exact: a true positive at every IoU
        [2, 60, 60, 20, 20, 0.8, 1],  # a false positive: recall stays 1/2
        [1, 40, 40, 20, 20, 0.7, 2],  # a dog, which has no ground truth
    ])  # fmt: skip
    evaluator, _ = run_cocoeval(dataset, results, [1, 2])
    curves = pr_curves(evaluator)
    # Precision 1 up to recall 0.5 (51 of the 101 points), 0 beyond; pycocotools' precision
    # is tp / (tp + fp + eps), hence the tolerance.
    expected = np.r_[np.ones(51), np.zeros(50)]
    np.testing.assert_allclose(curves.per_class_50[0], expected, atol=1e-12)
    assert np.isnan(curves.per_class_50[1]).all()
    np.testing.assert_allclose(curves.mean_50, expected, atol=1e-12)
    np.testing.assert_allclose(curves.mean_50_95, expected, atol=1e-12)
    assert curves.ap50 == pytest.approx(51 / 101, abs=1e-12) == evaluator.stats[1]
    assert curves.category_ids == (1, 2)


def _no_ground_truth_evaluator(classes: int) -> SimpleNamespace:
    params = SimpleNamespace(
        recThrs=np.linspace(0, 1, 101), iouThrs=np.linspace(0.5, 0.95, 10),
        areaRngLbl=["all", "small", "medium", "large"], maxDets=[1, 10, 100],
        catIds=list(range(1, classes + 1)),
    )  # fmt: skip
    return SimpleNamespace(eval={"precision": -np.ones((10, 101, classes, 4, 3))}, params=params)


def test_pr_curves_without_any_ground_truth(tmp_path, matplotlib_installed) -> None:
    curves = pr_curves(_no_ground_truth_evaluator(3))
    assert np.isnan(curves.mean_50).all() and np.isnan(curves.mean_50_95).all()
    assert np.isnan(curves.per_class_50).all() and np.isnan(curves.ap50)
    path = plots.plot_pr_curves(curves, ["a", "b", "c"], [0, 0, 0], tmp_path / "pr.png")
    assert _png_size(path) == _pixels(PR_FIGSIZE)


def test_plot_pr_curves(tmp_path, mini, matplotlib_installed) -> None:
    curves = pr_curves(mini.evaluator)
    names = [c.name for c in mini.metrics.per_category]
    instances = [c.instances for c in mini.metrics.per_category]
    path = plots.plot_pr_curves(curves, names, instances, tmp_path / "pr.png", top=12)
    assert path == tmp_path / "pr.png"
    assert _png_size(path) == _pixels(PR_FIGSIZE)
    few = plots.plot_pr_curves(curves, names, instances, tmp_path / "few.png", top=1)
    assert _png_size(few) == _pixels(PR_FIGSIZE)
    assert few.read_bytes() != path.read_bytes()
    with pytest.raises(ValueError, match="one per category"):
        plots.plot_pr_curves(curves, names[:-1], instances, tmp_path / "x.png")


def test_shown_classes_and_row_normalized_by_hand() -> None:
    counts = np.array([
        [3, 0, 1, 0, 0],
        [0, 0, 0, 0, 0],  # class "b": no box, no detection
        [0, 0, 0, 0, 2],
        [0, 0, 0, 0, 0],  # class "d": no box, but detected once as a false positive
        [1, 0, 0, 1, 0],
    ])  # fmt: skip
    matrix = ConfusionMatrix(("a", "b", "c", "d", "background"), counts, 0.5, 0.3)
    assert shown_classes(matrix) == [0, 2, 3, 4]
    empty = ConfusionMatrix(("a", "b", "background"), np.zeros((3, 3), np.int64), 0.5, 0.0)
    assert shown_classes(empty) == [2]  # background always
    fractions = row_normalized(counts)
    np.testing.assert_allclose(fractions[0], [0.75, 0, 0.25, 0, 0])
    np.testing.assert_allclose(fractions[4], [0.5, 0, 0, 0.5, 0])
    np.testing.assert_array_equal(fractions.sum(axis=1), [1, 0, 1, 0, 1])
    assert fractions.dtype == np.float64


def test_confusion_figsize_grows_and_is_capped() -> None:
    sizes = [confusion_figsize(n)[0] for n in (1, 10, 30, 81, 500)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[3] and sizes[-1] == 24.0
    assert all(side * 2 == int(side * 2) for side in sizes)  # whole pixels at any DPI of 2n


def test_plot_confusion_matrix(tmp_path, mini, matplotlib_installed) -> None:
    unused = [i for i, c in enumerate(mini.metrics.per_category) if c.instances == 0]
    unused_id = mini.dataset.classes.category_ids[unused[0]]
    results = mini.results[mini.results[:, 6] != unused_id]  # never detected either
    matrix = confusion_matrix(mini.dataset, results, score_threshold=0.3)
    path = plots.plot_confusion_matrix(matrix, tmp_path / "confusion.png")
    shown = shown_classes(matrix)
    assert len(shown) == 80 and unused[0] not in shown and shown[-1] == 80
    assert _png_size(path) == _pixels(confusion_figsize(len(shown)))
    small = ConfusionMatrix(("cat", "dog", "background"), np.array([[5, 1, 2], [0, 0, 0],
                            [3, 0, 0]]), 0.5, 0.25)  # fmt: skip
    path = plots.plot_confusion_matrix(small, tmp_path / "small.png")
    assert _png_size(path) == _pixels(confusion_figsize(2))


def test_plot_score_curves(tmp_path, mini, matplotlib_installed) -> None:
    names = list(mini.dataset.classes.names)
    overall, per_class = score_curves(coco_matches(mini.evaluator, len(names)), names)
    path = plots.plot_score_curves(overall, per_class, tmp_path / "scores.png", None)
    assert _png_size(path) == _pixels(SCORE_FIGSIZE)
    best = {"threshold": 0.62, "precision": 0.8, "recall": 0.7, "f1": 0.75}
    marked = plots.plot_score_curves(overall, per_class, tmp_path / "marked.png", best)
    assert marked.read_bytes() != path.read_bytes()  # the marker moved
    empty = ScoreCurve.of(np.zeros(0), np.zeros(0, bool), 0)
    path = plots.plot_score_curves(empty, {"cat": empty}, tmp_path / "empty.png", None)
    assert _png_size(path) == _pixels(SCORE_FIGSIZE)


def test_plot_error_kinds(tmp_path, matplotlib_installed) -> None:
    counts = np.random.default_rng(3).integers(0, 50, (80, len(KINDS)))
    classes = [f"class {i}" for i in range(80)]
    path = plots.plot_error_kinds(classes, counts, KINDS, tmp_path / "errors.png", top=20)
    assert _png_size(path) == _pixels(ERRORS_FIGSIZE)
    zero = plots.plot_error_kinds(classes, np.zeros_like(counts), KINDS, tmp_path / "zero.png")
    assert _png_size(zero) == _pixels(ERRORS_FIGSIZE)
    with pytest.raises(ValueError, match="one per class"):
        plots.plot_error_kinds(classes[:-1], counts, KINDS, tmp_path / "x.png")


def test_without_matplotlib_is_one_line(tmp_path, monkeypatch) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"^[^\n]*pip install matplotlib$"):
        plots.check_plotting()
    empty = ScoreCurve.of(np.zeros(0), np.zeros(0, bool), 0)
    matrix = ConfusionMatrix(("a", "background"), np.zeros((2, 2), np.int64), 0.5, 0.0)
    writers: list[Any] = [
        lambda p: plots.plot_pr_curves(pr_curves(_no_ground_truth_evaluator(1)), ["a"], [0], p),
        lambda p: plots.plot_confusion_matrix(matrix, p),
        lambda p: plots.plot_score_curves(empty, {}, p, None),
        lambda p: plots.plot_error_kinds(["a"], np.zeros((1, 5)), KINDS, p),
    ]
    for write in writers:
        with pytest.raises(ImportError, match=r"^[^\n]*pip install matplotlib$"):
            write(tmp_path / "x.png")
        assert not (tmp_path / "x.png").exists()
