"""``fasterrcnn export --precision int8``: the int8 ONNX file of the small native model (R18,
3 classes, short side 320) calibrated on COCO images says it is int8, carries its
configuration, keeps in float every node that decides where boxes are, and runs through
onnxruntime and OpenVINO on three image sizes, an image without detections and a batch of 3;
bad uses get one-line errors.

The model has random weights, whose detections are chaotic under int8 rounding (its scores
are all alike, so a tiny change reorders them): the agreement of int8 with float32 is checked
on a trained model, in the slow run (tests/training/test_int8_trained.py).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import IMAGES
from helpers.cli_runner import assert_one_line_error, run_cli
from helpers.parity import match_fraction
from helpers.videos import write_video

import fasterrcnn
from fasterrcnn.cli import main
from fasterrcnn.data.images import read_image
from fasterrcnn.export.quantize import QUANTIZED_SCOPES, iter_quantized_nodes
from fasterrcnn.export.runtimes import CONFIG_KEY, PRECISION_KEY
from fasterrcnn.inference.loop import run_inference

pytest.importorskip("nncf")
BACKENDS = [b for b in ("onnxruntime", "openvino") if importlib.util.find_spec(b)]
CALIBRATION = 4


@pytest.fixture(scope="module")
def int8_file(pet_file, tmp_path_factory) -> tuple[Path, str]:
    """The int8 export, calibrated on 4 of the COCO slice's images (a broken file among
    them, skipped), and what the command printed on stderr."""
    tmp = tmp_path_factory.mktemp("int8")
    calibration = tmp / "calibration"
    calibration.mkdir()
    for path in sorted(IMAGES.glob("*.jpg"))[:3]:
        shutil.copy(path, calibration / path.name)
    (calibration / "000_broken.jpg").write_bytes(b"not a jpeg")
    out = tmp / "pets-int8.onnx"
    run = run_cli(
        ["export", "--weights", pet_file, "--precision", "int8", "--calibration-images",
         calibration, "--calibration-size", CALIBRATION, out],
        tmp,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return out, run.stderr


def test_the_file_says_int8_and_carries_its_configuration(int8_file, pet_model) -> None:
    path, printed = int8_file
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata[PRECISION_KEY] == "int8" and CONFIG_KEY in metadata
    for backend in BACKENDS:
        model = fasterrcnn.load_exported(path, backend)
        assert model.quantized and model.config == pet_model.config
    assert f"skipped: {path.parent / 'calibration' / '000_broken.jpg'}: " in printed
    assert "calibrating on 3 image(s), fewer than the 4 asked" in printed


def test_box_decisions_stay_float(int8_file) -> None:
    """Every convolution and linear layer of the quantized scopes reads int8 inputs; no node
    outside them does (anchors, decoding, proposal NMS, RoIAlign, the final NMS)."""
    graph = onnx.load(str(int8_file[0]))
    quantized = set(iter_quantized_nodes(graph))
    layers = {
        node.name
        for node in graph.graph.node
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.name.startswith(QUANTIZED_SCOPES)
    }
    assert layers and layers <= quantized
    assert all(name.startswith(QUANTIZED_SCOPES) for name in quantized), sorted(quantized)
    kinds = {node.op_type for node in graph.graph.node if node.name in quantized}
    # (Shape reads only the shape of a dequantized tensor)
    assert kinds <= {"Conv", "Gemm", "Add", "MaxPool", "Resize", "Flatten", "Shape"}, kinds


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Three sizes (portrait, landscape, a small crop) and a flat grey image."""
    paths = sorted(IMAGES.glob("*.jpg"))
    sized = {read_image(p).shape[:2]: read_image(p) for p in paths}
    three = list(sized.values())[:2]
    three.append(three[0][40:200, 60:300].copy())
    return [*three, np.full((240, 320, 3), 128, np.uint8)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_runs_any_size_and_batch(int8_file, images, backend) -> None:
    model = fasterrcnn.load_exported(int8_file[0], backend)
    alone = [r.detections for r in run_inference(model, images, score_threshold=0.0)]
    assert len({im.shape[:2] for im in images}) == 4
    for image, dets in zip(images, alone, strict=True):
        assert dets is not None and dets.image_size == image.shape[:2]
        height, width = image.shape[:2]
        boxes = dets.boxes
        assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 2] <= width)
        assert np.all(boxes[:, 1] >= 0) and np.all(boxes[:, 3] <= height)
        assert np.all(np.diff(dets.scores) <= 0)
        assert set(dets.class_names) <= set(model.config.classes.names)
    assert len(alone[0]) > 0  # random heads score everything: a real image gives boxes
    high = [r.detections for r in run_inference(model, images[3:], score_threshold=0.99)]
    assert high[0] is not None and len(high[0]) == 0  # nothing scores 0.99 on flat grey
    # a batch of 3 images of one size (no padding between them) gives each its own detections
    image = images[0]
    three = [image, image[:, ::-1].copy(), image[::-1].copy()]
    singles = [r.detections for r in run_inference(model, three, score_threshold=0.0)]
    batched = [r.detections for r in run_inference(model, three, batch_size=3, score_threshold=0.0)]
    for one, many in zip(singles, batched, strict=True):
        assert one is not None and many is not None and len(one) > 0
        fraction = match_fraction(
            one.boxes, one.scores, many.boxes, many.scores, one.category_ids, many.category_ids
        )
        assert fraction >= 0.99, fraction


def _dicts(detections) -> list[dict]:
    return json.loads(json.dumps(detections.detection_dicts()))


def test_int8_in_detect_slices_and_videos(int8_file, tmp_path) -> None:
    """``detect`` on an image, the same image in tiles, and a 3-frame lossless video gives
    what ``load_exported(...).predict`` gives on them."""
    path = int8_file[0]
    model = fasterrcnn.load_exported(path, BACKENDS[-1])
    image = sorted(IMAGES.glob("*.jpg"))[0]
    frames = [read_image(image)[:240, 80 * k : 80 * k + 320].copy() for k in range(3)]
    video = write_video(tmp_path / "clip.mkv", frames)  # ffv1: the frames exactly
    common = ["--backend", BACKENDS[-1], "--weights", str(path), "--no-draw",
              "--score-threshold", "0.2"]  # fmt: skip
    assert main(["detect", str(image), str(video), *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["detect", str(image), *common, "--slice", "256", "--out",
                 str(tmp_path / "b")]) == 0  # fmt: skip
    whole = json.loads((tmp_path / "a" / f"{image.stem}.json").read_text())["detections"]
    assert whole == _dicts(model.predict(image, score_threshold=0.2))
    sliced = json.loads((tmp_path / "b" / f"{image.stem}.json").read_text())["detections"]
    expected = model.predict(image, score_threshold=0.2, slicing=fasterrcnn.SliceOptions(256))
    assert sliced == _dicts(expected) and sliced != whole
    lines = [json.loads(line) for line in (tmp_path / "a" / "clip.jsonl").read_text().splitlines()]
    assert [line["detections"] for line in lines] == [
        _dicts(model.predict(frame, score_threshold=0.2)) for frame in frames
    ]


def test_int8_file_as_torchscript_is_one_line(int8_file, tmp_path) -> None:
    path = int8_file[0]
    image = sorted(IMAGES.glob("*.jpg"))[0]
    as_torchscript = run_cli(
        ["detect", image, "--backend", "torchscript", "--weights", path], tmp_path
    )
    assert as_torchscript.returncode == 2
    assert_one_line_error(as_torchscript, str(path), "int8", "not torchscript")


BAD_EXPORTS = {
    "no folder": (["--precision", "int8", "--calibration-images", "{tmp}/none"], "not a folder"),
    "no image": (["--precision", "int8", "--calibration-images", "{tmp}/texts"], "no image"),
    "none readable": (
        ["--precision", "int8", "--calibration-images", "{tmp}/broken"],
        "1 image file(s), none readable",
    ),
    "no folder given": (["--precision", "int8"], "--calibration-images"),
    "torchscript": (
        ["--precision", "int8", "--format", "torchscript", "--calibration-images", "{tmp}"],
        "exports ONNX",
    ),
    "fp32 with images": (["--calibration-images", "{tmp}"], "add --precision int8"),
    "size 0": (
        ["--precision", "int8", "--calibration-images", "{tmp}/broken", "--calibration-size", "0"],
        "--calibration-size must be at least 1, not 0",
    ),
}


@pytest.mark.parametrize("case", list(BAD_EXPORTS))
def test_bad_int8_exports_are_one_line(case, pet_file, tmp_path, capsys) -> None:
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("no image here\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    options, needle = BAD_EXPORTS[case]
    argv = [o.format(tmp=tmp_path) for o in options]
    out = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(pet_file), *argv, str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and needle in error, error
    assert not out.exists()


def test_missing_nncf_names_the_extra(pet_file, tmp_path, monkeypatch, capsys) -> None:
    import builtins

    real_import = builtins.__import__

    def no_nncf(name, *args, **kwargs):
        if name == "nncf" or name.startswith("nncf."):
            raise ImportError("No module named 'nncf'", name="nncf")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nncf)
    argv = ["export", "--weights", str(pet_file), "--precision", "int8",
            "--calibration-images", str(IMAGES), str(tmp_path / "m.onnx")]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith("int8 export needs NNCF (pip install 'fasterrcnn[int8]')"), error
