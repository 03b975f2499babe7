"""int8 against float32 on a trained model (slow): the session's trained model
(helpers/scratch_model.py), exported to int8 calibrated on 5 images of the COCO slice, gives
on the other 5 the float32 model's detections, through onnxruntime and OpenVINO.

The tolerance comes from the int8 error measured on this model (printed). In a trial run,
OpenVINO gave back 55 of float32's 60 detections scoring 0.4 or more at IoU 0.5 (same class,
score >= 0.3), 47 at IoU 0.7 and 30 at IoU 0.9 (onnxruntime: 54 at IoU 0.5). The pairs at
IoU 0.5 differ in score by 0.035-0.045 on average. Keeping the heads in float did not change
these counts (29-33 at IoU 0.9): the error comes from the quantized body and FPN, on a model
trained on 8 images. The test asks for 80% found at IoU 0.5 (measured 90-92%) and a mean
score error of at most 0.1. The AP of int8 against float32 is measured by
benchmarks/int8_accuracy.py.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
from helpers.cli_runner import run_cli
from helpers.parity import ious
from helpers.scratch_model import IMAGES, Scratch

import fasterrcnn

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("nncf") is None, reason="nncf is not installed"
)]  # fmt: skip
BACKENDS = [b for b in ("onnxruntime", "openvino") if importlib.util.find_spec(b)]
FOUND_SCORE, LOOSE_SCORE, MATCH_IOU = 0.4, 0.3, 0.5


def _matches(ref: fasterrcnn.Detections, other: fasterrcnn.Detections) -> list[tuple[int, int]]:
    """(ref index, other index) pairs, ref's best first, one to one, same class, IoU >= 0.5."""
    free = np.ones(len(other), bool)
    pairs = []
    for i in np.argsort(-ref.scores, kind="stable"):
        overlaps = ious(ref.boxes[i], other.boxes)
        overlaps[~free | (other.category_ids != ref.category_ids[i])] = 0
        if overlaps.max(initial=0) >= MATCH_IOU:
            j = int(overlaps.argmax())
            free[j] = False
            pairs.append((int(i), j))
    return pairs


def test_int8_finds_what_fp32_finds(scratch: Scratch, tmp_path) -> None:
    paths = sorted(IMAGES.glob("*.jpg"))
    calibration, compared = paths[:5], paths[5:]
    folder = tmp_path / "calibration"
    folder.mkdir()
    for path in calibration:
        shutil.copy(path, folder / path.name)
    int8 = tmp_path / "model-int8.onnx"
    run = run_cli(
        ["export", "--weights", scratch.model, "--precision", "int8", "--calibration-images",
         folder, int8],
        tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    fp32 = fasterrcnn.create_model(weights=scratch.model)
    expected = [fp32.predict(p, score_threshold=LOOSE_SCORE) for p in compared]
    assert sum(int((d.scores >= FOUND_SCORE).sum()) for d in expected) >= 20
    for backend in BACKENDS:
        model = fasterrcnn.load_exported(int8, backend)
        found = total = 0
        score_errors, box_errors = [], []
        for path, ref in zip(compared, expected, strict=True):
            got = model.predict(path, score_threshold=LOOSE_SCORE)
            pairs = _matches(ref, got)
            confident = set(np.flatnonzero(ref.scores >= FOUND_SCORE).tolist())
            total += len(confident)
            found += sum(i in confident for i, _ in pairs)
            for i, j in pairs:
                score_errors.append(abs(float(ref.scores[i] - got.scores[j])))
                size = np.tile(ref.boxes[i, 2:] - ref.boxes[i, :2], 2)  # w, h, w, h
                box_errors.append(float(np.max(np.abs(ref.boxes[i] - got.boxes[j]) / size)))
        print(f"{backend}: int8 found {found} of fp32's {total} detections scoring >= "
              f"{FOUND_SCORE}; matched pairs: score error mean {np.mean(score_errors):.4f} "
              f"max {np.max(score_errors):.4f}, box error (fraction of its side) mean "
              f"{np.mean(box_errors):.4f} max {np.max(box_errors):.4f}")  # fmt: skip
        assert found >= 0.8 * total
        assert np.mean(score_errors) <= 0.1
