"""The COCO bbox evaluator and the results JSON, against pycocotools run directly on the
val2017 slice."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.coco_slice import ANN_FILE, LONE_TP_PRECISION, SUBSET
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fasterrcnn.data.coco import CocoDataset, DatasetError
from fasterrcnn.evaluation.coco_metrics import STAT_NAMES, evaluate_results
from fasterrcnn.evaluation.results_json import (
    load_results,
    results_from_detections,
    results_to_json,
    write_results,
)


def gt_results(dataset: CocoDataset) -> np.ndarray:
    """The non-crowd ground truth as score-1 detections."""
    rows = [
        [image.id, *a["bbox"], 1.0, a["category_id"]]
        for image in dataset.images
        for a in dataset.annotations(image.id)
        if not a["iscrowd"]
    ]
    return np.array(rows, dtype=np.float64)


def hand_built_results(raw: dict) -> list[dict]:
    """Jittered GT (some dropped), duplicates, false positives, hits on crowd regions and
    detections on the images without annotations; scores with ties."""
    rng = np.random.default_rng(7)
    sizes = {image["id"]: (image["width"], image["height"]) for image in raw["images"]}
    category_ids = [c["id"] for c in raw["categories"]]
    out: list[dict] = []

    def add(image_id: int, category_id: int, box: list[float], score: float) -> None:
        x, y, w, h = (round(float(v), 3) for v in box)
        out.append(
            {
                "image_id": image_id,
                "category_id": category_id,
                "bbox": [x, y, max(w, 1.0), max(h, 1.0)],
                "score": round(score, 2),  # two decimals: ties in score order
            }
        )

    for a in raw["annotations"]:
        box = np.array(a["bbox"])
        if a["iscrowd"]:
            add(a["image_id"], a["category_id"], box + rng.uniform(-2, 2, 4), 0.6)
            add(a["image_id"], a["category_id"], box * [1, 1, 0.3, 0.3], 0.55)
            continue
        if rng.random() < 0.2:
            continue  # missed
        add(a["image_id"], a["category_id"], box + rng.uniform(-4, 4, 4), rng.uniform(0.3, 1))
        if rng.random() < 0.2:  # duplicate: a false positive at IoU thresholds it misses
            add(a["image_id"], a["category_id"], box + rng.uniform(-8, 8, 4), rng.uniform(0.2, 1))
    for image_id, (width, height) in sizes.items():
        for _ in range(4):
            x, y = rng.uniform(0, width - 40), rng.uniform(0, height - 40)
            box = [x, y, rng.uniform(5, 200), rng.uniform(5, 200)]
            add(image_id, int(rng.choice(category_ids)), box, rng.uniform(0.05, 0.5))
    out.append({"image_id": 139, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.5})
    return out


@pytest.fixture(scope="module")
def results_file(raw, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("results") / "detections.json"
    path.write_text(json.dumps(hand_built_results(raw)))
    return path


def pycocotools_direct(results_file: Path, image_ids: list[int] | None = None) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ANN_FILE))
        evaluator = COCOeval(gt, gt.loadRes(str(results_file)), iouType="bbox")
        if image_ids is not None:
            evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


# --- evaluation ----------------------------------------------------------------------------


def test_ground_truth_as_detections_is_perfect(dataset):
    metrics = evaluate_results(dataset, gt_results(dataset))
    assert metrics.stats["AP"] == 1.0 and metrics.stats["AP50"] == 1.0
    assert metrics.num_images == 10 and metrics.num_detections == 88
    with_gt = [c for c in metrics.per_category if c.instances > 0]
    assert len(with_gt) == 25 and sum(c.instances for c in with_gt) == 88
    for c in with_gt:  # 1.0, but for pycocotools' epsilon in one-instance classes
        if c.instances > 1:
            assert c.ap == c.ap50 == 1.0
        else:
            assert 1 - 1e-15 < c.ap < 1.0 and 1 - 1e-15 < c.ap50 < 1.0
    assert all(c.ap is None and c.ap50 is None for c in metrics.per_category if c.instances == 0)
    assert metrics.summary.count("\n") == 12 and metrics.summary.rstrip().endswith("= 1.000")


def _per_category_from_precision(evaluator: COCOeval) -> dict[int, tuple[float | None, ...]]:
    out = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        p = evaluator.eval["precision"][:, :, k, 0, 2]  # area all, maxDets 100
        ap = float(np.mean(p[p > -1])) if (p > -1).any() else None
        ap50 = float(np.mean(p[0][p[0] > -1])) if (p[0] > -1).any() else None
        out[category_id] = (ap, ap50)
    return out


@pytest.mark.parametrize("image_ids", [None, SUBSET])
def test_hand_built_results_match_pycocotools(dataset, results_file, image_ids, capsys):
    results = load_results(results_file, dataset)
    metrics = evaluate_results(dataset, results, image_ids=image_ids)
    assert capsys.readouterr().out == ""  # pycocotools' printing is captured
    direct = pycocotools_direct(results_file, image_ids)

    assert [metrics.stats[name] for name in STAT_NAMES] == direct.stats.tolist()
    assert 0.3 < metrics.stats["AP"] < 0.95  # neither trivial nor empty
    expected = _per_category_from_precision(direct)
    assert {c.category_id: (c.ap, c.ap50) for c in metrics.per_category} == expected
    evaluated = set(image_ids or [image.id for image in dataset.images])
    assert metrics.num_images == len(evaluated)
    assert metrics.num_detections == sum(1 for row in results if row[0] in evaluated)
    counted = {c.category_id: c.instances for c in metrics.per_category if c.instances}
    ground_truth = json.loads(ANN_FILE.read_text())["annotations"]
    expected_counts: dict[int, int] = {}
    for a in ground_truth:
        if a["image_id"] in evaluated and not a["iscrowd"]:
            expected_counts[a["category_id"]] = expected_counts.get(a["category_id"], 0) + 1
    assert counted == expected_counts

    as_json = metrics.to_dict()
    assert list(as_json) == [*STAT_NAMES, "per_category"]
    assert json.loads(json.dumps(as_json, allow_nan=False)) == as_json
    person = next(c for c in as_json["per_category"] if c["category_id"] == 1)
    assert person == {
        "category_id": 1,
        "name": "person",
        "AP": expected[1][0],
        "AP50": expected[1][1],
        "instances": expected_counts[1],
    }
    assert any(c["AP"] is None for c in as_json["per_category"])


def test_summary_is_pycocotools_printout(dataset, results_file):
    metrics = evaluate_results(dataset, load_results(results_file, dataset))
    printed = io.StringIO()
    direct = pycocotools_direct(results_file)
    with contextlib.redirect_stdout(printed):
        direct.summarize()
    assert metrics.summary == printed.getvalue()


def test_table_lists_every_category_in_percent(dataset):
    metrics = evaluate_results(dataset, gt_results(dataset))
    table = metrics.table()
    assert "person" in table and "toothbrush" in table and "100.0" in table
    cells = table.split()
    assert cells.count("100.0") == 25 and cells.count("-") == 55


def test_zero_detections_give_zero_ap(dataset):
    for backend in ("pycocotools", "faster-coco-eval"):
        if backend == "faster-coco-eval" and importlib.util.find_spec("faster_coco_eval") is None:
            continue
        metrics = evaluate_results(dataset, np.zeros((0, 7)), backend=backend)
        assert metrics.stats["AP"] == 0.0 and metrics.stats["AR100"] == 0.0
        assert metrics.num_detections == 0
        assert {c.ap for c in metrics.per_category if c.instances} == {0.0}


def test_zero_ground_truth_gives_minus_one(raw):
    data = {"images": raw["images"][:2], "annotations": [], "categories": raw["categories"]}
    dataset = CocoDataset.load(data)
    results = np.array([[139, 10, 10, 50, 50, 0.9, 1]], dtype=np.float64)
    metrics = evaluate_results(dataset, results)
    assert list(metrics.stats.values()) == [-1.0] * 12
    assert all(c.ap is None and c.instances == 0 for c in metrics.per_category)
    assert metrics.to_dict()["AP"] == -1.0


def test_bad_evaluate_arguments(dataset):
    with pytest.raises(ValueError, match="shape"):
        evaluate_results(dataset, np.zeros((3, 6)))
    with pytest.raises(ValueError, match="not in the dataset"):
        evaluate_results(dataset, np.array([[1, 0, 0, 1, 1, 0.5, 1]], dtype=np.float64))
    with pytest.raises(ValueError, match="not in the dataset"):
        evaluate_results(dataset, np.zeros((0, 7)), image_ids=[139, 4])
    with pytest.raises(ValueError, match="backend"):
        evaluate_results(dataset, np.zeros((0, 7)), backend="other")  # type: ignore[arg-type]


def test_faster_coco_eval_gives_the_same_stats(dataset, results_file):
    faster_coco_eval = pytest.importorskip("faster_coco_eval")
    results = load_results(results_file, dataset)
    for image_ids in (None, SUBSET):
        reference = evaluate_results(dataset, results, image_ids=image_ids)
        fast = evaluate_results(dataset, results, image_ids=image_ids, backend="faster-coco-eval")
        assert fast.summary == reference.summary
        assert fast.stats == pytest.approx(reference.stats, rel=0, abs=1e-15)
        for a, b in zip(fast.per_category, reference.per_category, strict=True):
            assert (a.category_id, a.name, a.instances) == (b.category_id, b.name, b.instances)
            if b.ap is None:
                assert a.ap is None and a.ap50 is None and b.ap50 is None
            else:
                assert (a.ap, a.ap50) == pytest.approx((b.ap, b.ap50), rel=0, abs=1e-15)

    # Why not bit-identical: faster-coco-eval's precision is tp / (tp + fp), pycocotools' adds
    # np.spacing(1) to the denominator; they differ exactly in the cells where pycocotools has
    # 1 - 2**-52, and nowhere else.
    direct = pycocotools_direct(results_file)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = faster_coco_eval.COCO(str(ANN_FILE))
        fast_eval = faster_coco_eval.COCOeval_faster(gt, gt.loadRes(str(results_file)), "bbox")
        fast_eval.evaluate()
        fast_eval.accumulate()
    ours, theirs = direct.eval["precision"], np.asarray(fast_eval.eval["precision"])
    differ = ours != theirs
    assert differ.any() and (ours[differ] == LONE_TP_PRECISION).all()
    assert (theirs[differ] == 1.0).all()
    assert np.array_equal(direct.eval["recall"], np.asarray(fast_eval.eval["recall"]))


# --- results files -------------------------------------------------------------------------


def test_results_from_detections_converts_and_rounds():
    boxes = np.array([[10.5, 20.25, 30.0625, 40.1], [0, 0, 1.0625, 0.1]], dtype=np.float32)
    scores = np.array([0.123456789, 0.9], dtype=np.float32)
    rows = results_from_detections(139, boxes, scores, np.array([1, 90]))
    assert rows.dtype == np.float64 and rows.shape == (2, 7)
    # float32 40.1 is 40.099998474..., so h = 19.849998... -> 19.85; 1.0625 ties to even.
    assert rows.tolist() == [
        [139, 10.5, 20.25, 19.562, 19.85, 0.12346, 1],
        [139, 0.0, 0.0, 1.062, 0.1, 0.9, 90],
    ]
    assert results_from_detections(5, np.zeros((0, 4)), np.zeros(0), np.zeros(0)).shape == (0, 7)


def test_write_results_round_trips(dataset, results_file, tmp_path):
    results = load_results(results_file, dataset)
    out = tmp_path / "written.json"
    write_results(out, results)
    assert json.loads(out.read_text()) == json.loads(results_file.read_text())
    assert np.array_equal(load_results(out, dataset), results)
    assert [p.name for p in tmp_path.iterdir()] == ["written.json"]  # no temp file left
    entry = results_to_json(results[:1])[0]
    assert isinstance(entry["image_id"], int) and isinstance(entry["category_id"], int)
    write_results(out, np.zeros((0, 7)))
    assert json.loads(out.read_text()) == [] and load_results(out, dataset).shape == (0, 7)


BAD_RESULTS = [
    ({"a": 1}, "top level is an object, not a list of detections"),
    ([{"image_id": 139, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}, 5], "entry 1 is a number, not an object"),
    ([{"image_id": 139, "category_id": 1, "bbox": [0, 0, 1, 1]}], "entry 0 has no 'score'"),
    ([{"image_id": 139, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "0.5"}], "entry 0 has score '0.5', not a number"),
    ([{"image_id": 139.0, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}], "entry 0 has image_id 139.0, not an integer"),
    ([{"image_id": 139, "category_id": 1, "bbox": [0, 0, 1], "score": 1}], "entry 0 has bbox [0, 0, 1], not 4 numbers"),
    ([{"image_id": 139, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 1}], "entry 0 has a negative bbox width or height [0, 0, -1, 1]"),
    (
        [{"image_id": i, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1} for i in (139, 5, 6)],
        "2 detections point at unknown images (first: entry 1 -> image_id 5)",
    ),
    (
        [{"image_id": 139, "category_id": 12, "bbox": [0, 0, 1, 1], "score": 1}],
        "1 detection points at unknown categories (first: entry 0 -> category_id 12)",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("content", "problem"), BAD_RESULTS)
def test_bad_results_files_raise_one_line_errors(dataset, tmp_path, content, problem):
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DatasetError) as error:
        load_results(path, dataset)
    assert str(error.value) == f"{path}: {problem}"


def test_unreadable_results_files(dataset, tmp_path):
    with pytest.raises(DatasetError, match=r"absent\.json: no such file$"):
        load_results(tmp_path / "absent.json", dataset)
    broken = tmp_path / "detections.json"
    broken.write_text('[{"image_id": 139,')
    with pytest.raises(DatasetError, match=r"detections\.json: not valid JSON \(line 1, column"):
        load_results(broken, dataset)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert load_results(empty, dataset).shape == (0, 7)


def test_missing_faster_coco_eval_is_one_clear_line(dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import fails
    with pytest.raises(
        ImportError, match=r"^backend 'faster-coco-eval' .*pip install faster-coco-eval$"
    ):
        evaluate_results(dataset, np.zeros((0, 7)), backend="faster-coco-eval")


def test_failed_write_leaves_the_old_file(tmp_path):
    out = tmp_path / "detections.json"
    out.write_text("[]")
    bad = np.array([[139, 0, 0, 1, 1, np.nan, 1]])
    with pytest.raises(ValueError):
        write_results(out, bad)
    assert out.read_text() == "[]" and [p.name for p in tmp_path.iterdir()] == [out.name]
