"""``detect --slice`` and ``eval --slice`` against the library: the JSON ``detect`` writes for a
large image is ``predict(..., slicing=SliceOptions(...))``'s, and ``eval``'s results and
metrics are those of ``evaluate_results`` on results built from ``predict(..., slicing=)``;
bad slice options are one-line errors (exit status 2) before any model loads.

The model is ``pet_file``'s small R18 (random weights, short side 320): cheap, and at score
threshold 0 it detects plenty, so no comparison is of empty sets.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers.coco_slice import ANN_FILE, IMAGES

from fasterrcnn.cli import main
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.evaluation.coco_metrics import evaluate_results
from fasterrcnn.evaluation.dataset_run import class_mapping
from fasterrcnn.evaluation.results_json import results_from_detections
from fasterrcnn.inference.predict import predict
from fasterrcnn.inference.slicing import SliceOptions

# 1000 x 1400, tiles of 800 overlapping by 0.25: 2 x 2 tiles and the whole image.
LARGE = SliceOptions(800, overlap=0.25)
EVAL = SliceOptions(512)  # the slice's first images (640 x 426, 424 x 640): 2 tiles, whole


@pytest.fixture(scope="module")
def large_image(tmp_path_factory) -> Path:
    """A COCO image tiled 3 x 3 and cut to 1000 x 1400."""
    image = cv2.imread(str(IMAGES / "000000000139.jpg"))  # 426 x 640
    path = tmp_path_factory.mktemp("large") / "large.png"
    assert cv2.imwrite(str(path), np.tile(image, (3, 3, 1))[:1000, :1400])
    return path


def test_detect_slice_writes_the_sliced_detections(pet_file, pet_model, large_image, tmp_path):
    out = tmp_path / "out"
    args = ["detect", str(large_image), "--weights", str(pet_file), "--out", str(out),
            "--no-draw", "--score-threshold", "0", "--batch-size", "3", "--slice", "800",
            "--slice-overlap", "0.25"]  # fmt: skip
    assert main(args) == 0
    written = json.loads((out / "large.json").read_text())
    sliced = predict(pet_model, large_image, slicing=LARGE, score_threshold=0.0)
    expected = sliced.to_dict()
    assert (written["height"], written["width"]) == (1000, 1400)
    assert written["detections"] == expected["detections"]
    assert len(written["detections"]) > 0
    plain = predict(pet_model, large_image, score_threshold=0.0).to_dict()
    assert written["detections"] != plain["detections"]  # slicing changed the answer


def _sliced_results(model, dataset: CocoDataset, indices: list[int]) -> np.ndarray:
    """COCO results rows of ``predict(..., slicing=EVAL)`` on ``dataset``'s images."""
    mapping = class_mapping(model, dataset)
    rows = []
    for index in indices:
        dets = predict(model, dataset.image_path(index), slicing=EVAL)
        category_ids = mapping.dataset_ids(dets.category_ids)
        kept = category_ids >= 0
        image_id = dataset.images[index].id
        rows.append(
            results_from_detections(
                image_id, dets.boxes[kept], dets.scores[kept], category_ids[kept]
            )
        )
    return np.concatenate(rows)


def test_eval_slice_evaluates_the_sliced_detections(pet_file, pet_model, dataset, tmp_path):
    metrics_file, results_file = tmp_path / "metrics.json", tmp_path / "results.json"
    args = ["eval", "--images", str(IMAGES), "--annotations", str(ANN_FILE), "--weights",
            str(pet_file), "--max-images", "2", "--slice", "512", "--metrics",
            str(metrics_file), "--results", str(results_file)]  # fmt: skip
    assert main(args) == 0
    results = _sliced_results(pet_model, dataset, [0, 1])
    assert len(results) > 0 and set(results[:, 0]) == {dataset.images[i].id for i in (0, 1)}
    written = json.loads(results_file.read_text())
    assert [
        [r["image_id"], *r["bbox"], r["score"], r["category_id"]] for r in written
    ] == results.tolist()
    expected = evaluate_results(dataset, results, [dataset.images[i].id for i in (0, 1)])
    metrics = json.loads(metrics_file.read_text())
    assert metrics == json.loads(json.dumps(expected.to_dict()))
    assert expected.num_detections == len(results)


BAD = [
    (["--slice", "32"], "--slice: slice size must be at least 64 pixels, not 32"),
    (["--slice", "512", "--slice-overlap", "0.95"],
     "--slice: slice overlap must be in [0, 0.9), not 0.95"),
]  # fmt: skip


@pytest.mark.parametrize("command", ["detect", "eval"])
@pytest.mark.parametrize(("option", "message"), BAD)
def test_bad_slice_is_one_line_before_the_model(command, option, message, tmp_path, capsys):
    missing = tmp_path / "no_such_weights.safetensors"  # loading it would fail differently
    out = tmp_path / "out"
    data = {
        "detect": [str(IMAGES), "--out", str(out)],
        "eval": ["--images", str(IMAGES), "--annotations", str(ANN_FILE), "--results",
                 str(out / "results.json")],
    }[command]  # fmt: skip
    assert main([command, *data, "--weights", str(missing), *option]) == 2
    assert capsys.readouterr().err.strip() == f"fasterrcnn: error: {message}"
    assert not out.exists()
