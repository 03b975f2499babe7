"""The deploy threshold: the precision / recall / F1 curve against hand-counted cases and
against one computed threshold by threshold from pycocotools' own per-detection matches
(``evalImgs`` at IoU 0.5, area "all", 100 detections), with the best F1 at its argmax."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.seeded import DATA

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.evaluation.coco_metrics import run_cocoeval
from fasterrcnn.evaluation.thresholds import ScoreCurve, thresholds_of_results


def test_curve_by_hand() -> None:
    # Scores 0.9 (TP), 0.8 (FP), 0.8 (TP), 0.5 (TP), 0.3 (FP), against 4 boxes.
    scores = np.array([0.5, 0.8, 0.9, 0.3, 0.8])
    tp = np.array([True, False, True, False, True])
    curve = ScoreCurve.of(scores, tp, positives=4)
    np.testing.assert_array_equal(curve.thresholds, [0.9, 0.8, 0.5, 0.3])
    np.testing.assert_allclose(curve.precision, [1, 2 / 3, 3 / 4, 3 / 5])
    np.testing.assert_allclose(curve.recall, [1 / 4, 2 / 4, 3 / 4, 3 / 4])
    f1 = [2 * p * r / (p + r) for p, r in zip(curve.precision, curve.recall, strict=True)]
    np.testing.assert_allclose(curve.f1, f1)
    assert curve.best_f1() == pytest.approx(
        {"threshold": 0.5, "precision": 0.75, "recall": 0.75, "f1": 0.75}
    )
    assert curve.precision_target(0.9)["threshold"] == 0.9
    assert curve.precision_target(0.7)["threshold"] == 0.5  # the lowest that reaches it
    assert ScoreCurve.of(np.zeros(0), np.zeros(0, bool), 3).best_f1() is None
    # detections but no true positive: F1 is 0 at every threshold, so no deploy threshold
    assert ScoreCurve.of(np.array([0.9, 0.4]), np.zeros(2, bool), 3).best_f1() is None


def test_crowd_matches_count_neither_way() -> None:
    dataset = CocoDataset.load({
        "images": [{"id": 1, "file_name": "a.jpg", "height": 100, "width": 100}],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "cat"}],
    })  # fmt: skip
    results = np.array([
        [1, 0, 0, 10, 10, 0.9, 1],  # true positive
        [1, 55, 55, 30, 30, 0.8, 1],  # inside the crowd region: ignored
        [1, 20, 0, 10, 10, 0.7, 1],  # false positive
    ])  # fmt: skip
    found = thresholds_of_results(dataset, results)
    assert found["overall"] == pytest.approx(
        {"threshold": 0.9, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    )
    assert found["per_class"]["cat"] == found["overall"]
    assert found["precision_targets"]["0.95"]["threshold"] == 0.9


def _perturbed_results(dataset: CocoDataset) -> np.ndarray:
    rng = np.random.default_rng(1)
    ids = np.array(dataset.classes.category_ids)
    rows = []
    for image in dataset.images:
        for a in dataset.annotations(image.id):
            x, y, w, h = a["bbox"]
            if rng.random() < 0.8:
                j = rng.normal(0, 0.2, 4) * [w, h, w, h]
                right = rng.random() < 0.85  # the right class scores higher, as a model's do
                category = a["category_id"] if right else rng.choice(ids)
                score = round(rng.uniform(0.3, 1.0) if right else rng.uniform(0.0, 0.7), 2)
                rows.append([image.id, x + j[0], y + j[1], abs(w + j[2]) + 1,
                             abs(h + j[3]) + 1, score, category])  # fmt: skip
        for _ in range(2):
            rows.append([image.id, *rng.uniform(0, 300, 2), *rng.uniform(5, 100, 2),
                         round(rng.uniform(0.0, 0.7), 2), rng.choice(ids)])  # fmt: skip
    return np.array(rows)


def test_equals_pycocotools_matches_threshold_by_threshold() -> None:
    dataset = CocoDataset.load(DATA / "coco_mini" / "instances_val2017_boxes.json")
    results = _perturbed_results(dataset)
    found = thresholds_of_results(dataset, results)
    # pycocotools' own evaluation, read entry by entry: (score, matched, ignored) per
    # detection at IoU 0.5 (index 0), area "all" (index 0), and the non-ignored boxes.
    evaluator, _ = run_cocoeval(dataset, results, sorted(i.id for i in dataset.images))
    best, points = _brute_force(evaluator.evalImgs, category=None)
    assert found["overall"] == pytest.approx(best, abs=1e-12)
    assert 0.3 < best["f1"] < 0.95 and 0.1 < best["threshold"] < 0.9
    for target in (0.9, 0.95):
        reaching = [p for p in points if p["precision"] >= target]
        expected = min(reaching, key=lambda p: p["threshold"]) if reaching else None
        assert found["precision_targets"][f"{target:g}"] == pytest.approx(expected, abs=1e-12)
    for category_id, name in ((1, "person"), (3, "car"), (62, "chair")):
        best, _ = _brute_force(evaluator.evalImgs, category=category_id)
        assert found["per_class"][name] == pytest.approx(best, abs=1e-12), name


def _brute_force(eval_imgs: list, category: int | None) -> tuple[dict, list[dict]]:
    detections, positives = [], 0
    for entry in eval_imgs:
        if entry is None or entry["aRng"] != [0, 1e10]:
            continue
        if category is not None and entry["category_id"] != category:
            continue
        positives += sum(1 for ignore in entry["gtIgnore"] if not ignore)
        for d, score in enumerate(entry["dtScores"]):
            detections.append((score, entry["dtMatches"][0][d] > 0, entry["dtIgnore"][0][d]))
    points = []
    for t in sorted({s for s, _, _ in detections}, reverse=True):
        tp = sum(1 for s, m, ig in detections if s >= t and m and not ig)
        fp = sum(1 for s, m, ig in detections if s >= t and not m and not ig)
        precision, recall = tp / (tp + fp), tp / positives
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        points.append({"threshold": t, "precision": precision, "recall": recall, "f1": f1})
    # The first maximum: the highest threshold.
    return max(points, key=lambda p: p["f1"]), points
