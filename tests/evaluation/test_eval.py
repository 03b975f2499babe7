"""``fasterrcnn eval`` and ``fasterrcnn.evaluate`` on real COCO images and ground truth.

With name-seeded weights the detections that ``eval`` writes are, image by image, those of
torchvision's own model and of MegEngine's (the recorded references in tests/fixtures); the
metrics are pycocotools' on those results; the model's classes are matched to the dataset's
categories by id or by name; and every bad input is a one-line error.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TORCHVISION
from helpers.megengine_pickle import megengine_pickle_bytes
from helpers.parity import match_fraction
from helpers.seeded import DATA, load_shapes, numpy_seeded

import fasterrcnn
from fasterrcnn.cli import main
from fasterrcnn.config import ClassTable
from fasterrcnn.data.class_mapping import ClassMapping
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.evaluation.coco_metrics import STAT_NAMES, evaluate_results
from fasterrcnn.evaluation.results_json import load_results

COCO = DATA / "coco"
ANNOTATIONS = COCO / "instances_val2017.json"
IMAGES = COCO / "val2017"
FIRST3 = (139, 802, 10764)  # the first three images of the annotation file
SEED = "faster_rcnn_res50_coco_1x_800size"


def _by_image(results_file: Path) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """image id -> (boxes xyxy, scores, category ids) of a COCO results file, file order."""
    out: dict[int, list] = {}
    for r in json.loads(results_file.read_text()):
        x, y, w, h = r["bbox"]
        out.setdefault(r["image_id"], []).append((x, y, x + w, y + h, r["score"], r["category_id"]))
    return {
        k: (np.array(v)[:, :4], np.array(v)[:, 4], np.array(v)[:, 5].astype(int))
        for k, v in out.items()
    }


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def tv_eval(tv_weights_path, tmp_path_factory) -> tuple[Path, Path]:
    """``fasterrcnn eval`` of the seeded torchvision model on the first three images."""
    folder = tmp_path_factory.mktemp("tv_eval")
    results, metrics = folder / "results.json", folder / "metrics.json"
    status = main(
        ["eval", "--model", TORCHVISION, "--weights", str(tv_weights_path),
         "--images", str(IMAGES), "--annotations", str(ANNOTATIONS), "--max-images", "3",
         "--results", str(results), "--metrics", str(metrics)]
    )  # fmt: skip
    assert status == 0
    return results, metrics


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("image_id", FIRST3)
def test_eval_gives_torchvision_detections(tv_eval, image_id):
    results, _ = tv_eval
    ours = _by_image(results)
    assert sorted(ours) == list(FIRST3)
    ref = np.load(DATA / "torchvision_jpeg" / f"{image_id:012d}.npz")
    # Name-seeded heads also predict torchvision's unused "N/A" ids, which no COCO
    # category has: those are not results.
    real = np.isin(ref["labels"], fasterrcnn.get_preset(SEED).config.classes.category_ids)
    assert real.sum() >= 50
    boxes, scores, categories = ours[image_id]
    assert len(boxes) == real.sum()
    matched = match_fraction(
        ref["boxes"][real], ref["scores"][real], boxes, scores, ref["labels"][real], categories
    )
    print(f"image {image_id}: {matched:.1%} of torchvision's {real.sum()} detections matched")
    assert matched >= 0.99, matched
    height, width = cv2.imread(str(IMAGES / f"{image_id:012d}.jpg")).shape[:2]
    assert boxes.min() >= 0 and np.all(boxes[:, 2] <= width) and np.all(boxes[:, 3] <= height)


def test_eval_metrics_are_those_of_the_results_file(tv_eval, capsys):
    results, metrics_file = tv_eval
    metrics = json.loads(metrics_file.read_text())
    assert list(metrics)[:12] == list(STAT_NAMES) and list(metrics)[12:] == ["per_category"]
    assert len(metrics["per_category"]) == 80
    # The same file evaluated without a model, by the CLI and by pycocotools' wrapper directly.
    again = metrics_file.with_name("again.json")
    assert main(["eval", "--annotations", str(ANNOTATIONS), "--results", str(results),
                 "--metrics", str(again)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in out
    dataset = CocoDataset.load(ANNOTATIONS)
    direct = evaluate_results(dataset, load_results(results, dataset), image_ids=list(FIRST3))
    assert metrics == direct.to_dict()
    # Without a model, every image of the file counts (the other seven with no detection).
    assert f"evaluation: 10 images, {len(json.loads(results.read_text()))} detections" in out


def test_evaluate_api_matches_the_cli(tv_model, tv_eval):
    results, _ = tv_eval
    metrics = fasterrcnn.evaluate(tv_model, IMAGES, ANNOTATIONS, max_images=2)
    dataset = CocoDataset.load(ANNOTATIONS)
    rows = load_results(results, dataset)
    two = rows[np.isin(rows[:, 0], FIRST3[:2])]
    expected = evaluate_results(dataset, two, image_ids=list(FIRST3[:2]))
    assert metrics.stats == expected.stats
    assert metrics.num_images == 2 and metrics.num_detections == len(two)


def test_eval_gives_megengine_detections(tmp_path):
    weights = numpy_seeded(
        load_shapes(DATA / "megengine_v0" / "megengine_v0_state_dict_shapes.json")
    )
    path = tmp_path / "seed.pkl"
    path.write_bytes(megengine_pickle_bytes(weights))
    results = tmp_path / "results.json"
    status = main(["eval", "--weights", str(path), "--images", str(IMAGES),
                   "--annotations", str(ANNOTATIONS), "--max-images", "3",
                   "--results", str(results)])  # fmt: skip
    assert status == 0
    ours = _by_image(results)
    for image_id in FIRST3:
        ref = np.load(DATA / "megengine_v0" / f"{image_id:012d}.npz")
        dets = ref["dets"]
        boxes, scores, categories = ours[image_id]
        assert len(boxes) == len(dets) == 100
        matched = match_fraction(
            dets[:, :4], dets[:, 4], boxes, scores, ref["category_ids"], categories
        )
        print(f"image {image_id}: {matched:.1%} of MegEngine's 100 detections matched")
        assert matched >= 0.99, (image_id, matched)


# --------------------------------------------------------------------------- classes


def test_class_mapping_by_id_by_name_and_partial():
    model = fasterrcnn.get_preset(TORCHVISION).config.classes  # 90 ids with "N/A" gaps
    coco = CocoDataset.load(ANNOTATIONS).classes
    by_id = ClassMapping.between(model, coco)
    assert by_id.note() is None and len(by_id.to_dataset) == 80
    assert all(k == v for k, v in by_id.to_dataset.items())
    # The same names under other ids (and other spelling of case and spaces) map by name.
    renumbered = ClassTable(tuple(range(1000, 1080)), tuple(n.upper() for n in coco.names))
    by_name = ClassMapping.between(model, renumbered)
    assert by_name.note() is None
    assert by_name.to_dataset[1] == 1000 and by_name.to_dataset[90] == 1079
    ids = np.array([1, 12, 90])  # person, an "N/A" slot, toothbrush
    assert by_name.dataset_ids(ids).tolist() == [1000, -1, 1079]
    # An id whose name differs is not a match; a category nobody predicts is named.
    partial = ClassTable((1, 2, 99), ("person", "unicycle", "widget"))
    mapping = ClassMapping.between(model, partial)
    assert mapping.to_dataset == {1: 1}
    note = mapping.note()
    assert note is not None and "2 of its 3 categories" in note and "'unicycle'" in note


@pytest.fixture(scope="module")
def strip_dataset(tmp_path_factory) -> Path:
    """A two-image COCO dataset of thin strips (cheap to run), person and widget boxes."""
    folder = tmp_path_factory.mktemp("strips")
    for name, source in (("a.jpg", "000000000139"), ("b.jpg", "000000087038")):
        cv2.imwrite(str(folder / name), cv2.imread(str(IMAGES / f"{source}.jpg"))[150:250])
    data = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "height": 100, "width": 640},
            {"id": 3, "file_name": "b.jpg", "height": 100, "width": 640},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [400, 10, 60, 80],
             "area": 4800, "iscrowd": 0},
            {"id": 2, "image_id": 3, "category_id": 99, "bbox": [10, 10, 50, 50],
             "area": 2500, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 99, "name": "widget"}],
    }  # fmt: skip
    (folder / "instances.json").write_text(json.dumps(data))
    return folder


def test_eval_says_which_categories_are_not_the_models(
    strip_dataset, tv_model, tv_weights_path, tmp_path, capsys
):
    # The class the model predicts most on these images becomes a "widget" of the dataset.
    predicted = np.concatenate(
        [
            d.category_ids
            for d in tv_model.predict([strip_dataset / "a.jpg", strip_dataset / "b.jpg"])
        ]
    )
    top = int(np.bincount(predicted).argmax())
    data = json.loads((strip_dataset / "instances.json").read_text())
    coco = json.loads(ANNOTATIONS.read_text())["categories"]
    data["categories"] = [c if c["id"] != top else {"id": 999, "name": "widget"} for c in coco]
    for annotation in data["annotations"]:
        annotation["category_id"] = 999
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(data))
    results = tmp_path / "results.json"
    status = main(["eval", "--model", TORCHVISION, "--weights", str(tv_weights_path),
                   "--images", str(strip_dataset), "--annotations", str(annotations),
                   "--results", str(results)])  # fmt: skip
    assert status == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "fasterrcnn:" in line]
    assert len(err) == 1 and "'widget'" in err[0] and "1 of its 80 categories" in err[0]
    categories = {r["category_id"] for r in json.loads(results.read_text())}
    assert categories and top not in categories and 999 not in categories


def test_eval_skips_an_unreadable_image(strip_dataset, tv_weights_path, tmp_path, capsys):
    folder = tmp_path / "images"
    shutil.copytree(strip_dataset, folder)
    (folder / "b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    metrics = tmp_path / "metrics.json"
    status = main(["eval", "--model", TORCHVISION, "--weights", str(tv_weights_path),
                   "--images", str(folder), "--annotations", str(folder / "instances.json"),
                   "--metrics", str(metrics), "--workers", "1"])  # fmt: skip
    assert status == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "b.jpg" in err and "1 image(s) could not be read" in err
    per_category = {c["name"]: c for c in json.loads(metrics.read_text())["per_category"]}
    assert per_category["person"]["instances"] == 1  # image 7 evaluated
    assert per_category["widget"]["instances"] == 0  # image 3 left out


def test_eval_without_categories_in_common(strip_dataset, tv_weights_path, tmp_path, capsys):
    data = json.loads((strip_dataset / "instances.json").read_text())
    data["categories"] = [{"id": 1, "name": "widget"}, {"id": 99, "name": "gadget"}]
    annotations = tmp_path / "other.json"
    annotations.write_text(json.dumps(data))
    status = main(["eval", "--model", TORCHVISION, "--weights", str(tv_weights_path),
                   "--images", str(strip_dataset), "--annotations", str(annotations)])  # fmt: skip
    assert status == 2
    assert "none of the dataset's 2 categories" in _error_line(capsys)


# --------------------------------------------------------------------------- bad input


def _write(path: Path, content: object) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ({"annotations": [], "categories": []}, "images"),
        ({"images": [], "annotations": [], "categories": []}, "no images"),
        (
            {"images": [{"id": 1, "file_name": "000000000139.jpg"}],
             "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1]}],
             "categories": [{"id": 1, "name": "person"}]},
            "unknown image",
        ),
        (
            {"images": [{"id": 1, "file_name": "000000000139.jpg"}],
             "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1]}],
             "categories": [{"id": 1, "name": "person"}]},
            "unknown categor",
        ),
    ],
    ids=["missing", "not-json", "no-images-key", "empty", "unknown-image", "unknown-category"],
)  # fmt: skip
def test_bad_annotation_file(content, problem, tmp_path, capsys):
    path = tmp_path / "instances.json"
    if content is not None:
        _write(path, content)
    status = main(["eval", "--images", str(IMAGES), "--annotations", str(path)])
    assert status == 2
    line = _error_line(capsys)
    assert line.startswith("fasterrcnn: error:") and "instances.json" in line
    assert problem in line, line


def test_missing_images_need_a_flag(tmp_path, tv_weights_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(IMAGES / "000000000139.jpg", folder)
    args = ["eval", "--model", TORCHVISION, "--weights", str(tv_weights_path),
            "--images", str(folder), "--annotations", str(ANNOTATIONS), "--max-images", "2"]  # fmt: skip
    assert main(args) == 2
    line = _error_line(capsys)
    assert "1 of the 2 images" in line and "000000000802.jpg" in line
    metrics = tmp_path / "metrics.json"
    assert main([*args, "--allow-missing", "--metrics", str(metrics)]) == 0
    assert "missing" in capsys.readouterr().err
    # Only image 139's ground truth counts (802's oven and refrigerator are not there).
    dataset = CocoDataset.load(ANNOTATIONS)
    expected = Counter(a["category_id"] for a in dataset.annotations(139) if not a["iscrowd"])
    assert Counter(a["category_id"] for a in dataset.annotations(802)) == Counter({79: 1, 82: 1})
    per_category = json.loads(metrics.read_text())["per_category"]
    assert {c["category_id"]: c["instances"] for c in per_category if c["instances"]} == expected


def test_max_images_zero(capsys):
    assert main(["eval", "--images", str(IMAGES), "--annotations", str(ANNOTATIONS),
                 "--max-images", "0"]) == 2  # fmt: skip
    assert "--max-images must be at least 1" in _error_line(capsys)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"image_id": 139}, "not a list"),
        ([{"image_id": 139, "category_id": 1, "bbox": [0, 0, 1, 1]}], "score"),
        ([{"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}], "image"),
        ([{"image_id": 139, "category_id": 12, "bbox": [0, 0, 1, 1], "score": 0.5}], "categor"),
        ("[{", "not valid JSON"),
    ],
    ids=["not-a-list", "no-score", "unknown-image", "unknown-category", "not-json"],
)
def test_bad_results_file(content, problem, tmp_path, capsys):
    path = _write(tmp_path / "results.json", content)
    status = main(["eval", "--annotations", str(ANNOTATIONS), "--results", str(path)])
    assert status == 2
    line = _error_line(capsys)
    assert "results.json" in line and problem in line, line


def test_ground_truth_as_results_file_is_perfect(tmp_path, capsys):
    data = json.loads(ANNOTATIONS.read_text())
    gt = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1}
        for a in data["annotations"]
        if not a["iscrowd"]
    ]
    results = _write(tmp_path / "gt.json", gt)
    metrics = tmp_path / "metrics.json"
    assert main(["eval", "--annotations", str(ANNOTATIONS), "--results", str(results),
                 "--metrics", str(metrics)]) == 0  # fmt: skip
    values = json.loads(metrics.read_text())
    assert values["AP"] == 1.0 and values["AP50"] == 1.0 and values["AP75"] == 1.0
    assert "per-category AP" in capsys.readouterr().out


def test_eval_needs_images_or_results(capsys):
    assert main(["eval", "--annotations", str(ANNOTATIONS)]) == 2
    assert "--images" in _error_line(capsys)


def test_unwritable_outputs_fail_before_the_work(tmp_path, capsys):
    for option in ("--results", "--metrics"):
        target = tmp_path / "absent" / "out.json"
        status = main(["eval", "--images", str(IMAGES), "--annotations", str(ANNOTATIONS),
                       option, str(target)])  # fmt: skip
        assert status == 2
        assert option in _error_line(capsys)


def test_missing_faster_coco_eval_fails_before_the_work(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "faster_coco_eval" else real(name, *a),
    )
    status = main(["eval", "--images", str(IMAGES), "--annotations", str(ANNOTATIONS),
                   "--evaluator", "faster-coco-eval"])  # fmt: skip
    assert status == 2
    assert "pip install faster-coco-eval" in _error_line(capsys)


def test_faster_coco_eval_gives_the_same_metrics(tmp_path):
    pytest.importorskip("faster_coco_eval")
    data = json.loads(ANNOTATIONS.read_text())
    rng = np.random.default_rng(0)
    rows = [
        {"image_id": a["image_id"], "category_id": a["category_id"],
         "bbox": [v + float(rng.normal(0, 3)) for v in a["bbox"][:2]] + a["bbox"][2:],
         "score": float(rng.random())}
        for a in data["annotations"] if rng.random() < 0.8
    ]  # fmt: skip
    results = _write(tmp_path / "results.json", rows)
    metrics = {}
    for evaluator in ("pycocotools", "faster-coco-eval"):
        out = tmp_path / f"{evaluator}.json"
        assert main(["eval", "--annotations", str(ANNOTATIONS), "--results", str(results),
                     "--metrics", str(out), "--evaluator", evaluator]) == 0  # fmt: skip
        metrics[evaluator] = json.loads(out.read_text())
    reference, fast = metrics["pycocotools"], metrics["faster-coco-eval"]
    assert 0.3 < reference["AP"] < 1
    for name in STAT_NAMES:  # equal but for pycocotools' np.spacing(1) in precision
        assert fast[name] == pytest.approx(reference[name], abs=1e-15)
