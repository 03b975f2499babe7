"""``fasterrcnn export`` and ``fasterrcnn detect --backend``: the JSON an exported file gives
through the command line equals the PyTorch model's, and bad uses get one-line errors.

The model is the small native checkpoint of the native-format tests (R18, 3 classes, short
side 320, 100 proposals), so that each command takes seconds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import IMAGES
from helpers.cli_runner import assert_one_line_error, run_cli
from helpers.parity import match_fraction

from fasterrcnn.cli import main

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
SOURCES = [IMAGES / "000000000139.jpg", IMAGES / "000000000802.jpg"]


def _detect(out: Path, *options: object) -> dict[str, dict]:
    argv = [
        "detect",
        *map(str, SOURCES),
        "--out",
        str(out),
        "--score-threshold",
        "0.1",
        "--no-draw",
    ]
    assert main([*argv, *map(str, options)]) == 0
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def _arrays(result: dict) -> tuple[np.ndarray, ...]:
    dets = result["detections"]
    return (
        np.array([d["box"] for d in dets], dtype=np.float32).reshape(-1, 4),
        np.array([d["score"] for d in dets], dtype=np.float32),
        np.array([d["category_id"] for d in dets]),
    )


@pytest.fixture(scope="module")
def exported(pet_file, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("export")
    files = {"onnx": tmp / "pets.onnx", "torchscript": tmp / "pets.pt"}
    for fmt, path in files.items():
        if fmt == "onnx" and not HAS_ORT:
            continue
        assert main(["export", "--weights", str(pet_file), "--format", fmt, str(path)]) == 0
    return files


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "torchscript"])
def test_detect_backend_json_equals_pytorch(backend, exported, pet_file, tmp_path):
    if not {"onnxruntime": HAS_ORT, "openvino": HAS_OPENVINO}.get(backend, True):
        pytest.skip(f"{backend} is not installed")
    expected = _detect(tmp_path / "pytorch", "--weights", pet_file)
    graph = exported["torchscript" if backend == "torchscript" else "onnx"]
    actual = _detect(
        tmp_path / backend, "--backend", backend, "--weights", graph, "--batch-size", "2"
    )
    assert expected.keys() == actual.keys() == {p.stem for p in SOURCES}
    for stem in expected:
        ref, out = expected[stem], actual[stem]
        assert (ref["height"], ref["width"]) == (out["height"], out["width"])
        assert len(ref["detections"]) > 10
        assert abs(len(ref["detections"]) - len(out["detections"])) <= 1
        # The JSON rounds boxes to 1e-3 pixel and scores to 1e-5.
        fraction = match_fraction(
            *_arrays(ref)[:2], *_arrays(out)[:2], _arrays(ref)[2], _arrays(out)[2]
        )
        assert fraction >= 0.99, f"{stem}: {fraction:.3f} matched"


def test_backend_errors_are_one_line(exported, pet_file, tmp_path):
    image = SOURCES[0]
    no_file = run_cli(["detect", image, "--backend", "onnxruntime"], cwd=tmp_path)
    assert no_file.returncode == 2
    assert_one_line_error(no_file, "--backend onnxruntime", "--weights")
    not_a_graph = run_cli(
        ["detect", image, "--backend", "torchscript", "--weights", pet_file], cwd=tmp_path
    )
    assert not_a_graph.returncode == 2
    assert_one_line_error(not_a_graph, str(pet_file), "TorchScript")
    if HAS_ORT:
        wrong = run_cli(
            ["detect", image, "--backend", "onnxruntime", "--weights", pet_file], cwd=tmp_path
        )
        assert wrong.returncode == 2
        assert_one_line_error(wrong, str(pet_file), "onnxruntime")
    missing_folder = run_cli(
        ["export", "--weights", pet_file, tmp_path / "no" / "m.onnx"], cwd=tmp_path
    )
    assert missing_folder.returncode == 2
    assert_one_line_error(missing_folder, "does not exist")
