"""An exported file wherever the PyTorch model goes: ``fasterrcnn.load_exported(...).predict``
against ``create_model(...).predict``, ``eval --backend`` against the PyTorch eval of the same
weights, ``serve --backend`` against ``detect --backend``, and one-line errors for bad uses.

The model is the small native checkpoint of the export tests (R18, 3 classes, short side 320,
100 proposals). It is untrained, so no dataset has its classes: the evaluation set is made of
its own detections on six test images (every other one of each class's best twelve, each box
moved by up to 12% of its size), which gives AP, AR and per-class figures well inside (0, 1)
that move with any box, score or class the runtimes got wrong.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IMAGES
from helpers.cli_runner import run_cli, stderr_lines
from helpers.coco_slice import ANN_FILE
from helpers.models import PETS, RES18
from helpers.parity import match_fraction

import fasterrcnn
from fasterrcnn.cli import build_parser, main
from fasterrcnn.cli.backend_options import load_detector
from fasterrcnn.data.images import read_image
from fasterrcnn.export import ExportedModel, RuntimeLoadError

HAS = {
    "onnxruntime": importlib.util.find_spec("onnxruntime") is not None,
    "openvino": importlib.util.find_spec("openvino") is not None,
    "torchscript": True,
}
HAS_SERVE = all(importlib.util.find_spec(m) is not None for m in ("fastapi", "uvicorn"))
BACKENDS = ["onnxruntime", "openvino", "torchscript"]
SOURCES = [IMAGES / "000000000139.jpg", IMAGES / "000000000802.jpg"]
EVAL_IMAGES = sorted(IMAGES.glob("*.jpg"))[:6]
# The metrics of a runtime against PyTorch's. The runtimes move scores by up to 1e-6 and boxes
# by up to 4e-4 pixel (measured here), which at most swaps two detections of nearly equal score
# or moves a box across one of the 10 IoU thresholds: a change of about 2e-4 in an average
# over the thresholds and 3 classes of 26-36 boxes. Measured: onnxruntime and OpenVINO give
# every figure exactly; TorchScript 1.7e-4 off in the 12 COCO figures, 2.6e-4 in a class's AP.
# 1e-3 leaves room for a few such flips and none for a wrong detection.
METRIC_TOLERANCE = 1e-3


def _needs(backend: str) -> None:
    if not HAS[backend]:
        pytest.skip(f"{backend} is not installed")


def _graph(exported: dict[str, Path], backend: str) -> Path:
    return exported["torchscript" if backend == "torchscript" else "onnx"]


@pytest.fixture(scope="module")
def exported(pet_file, tmp_path_factory) -> dict[str, Path]:
    """The pet model exported through the command line, and an ONNX file that is not an
    export (no model configuration inside)."""
    tmp = tmp_path_factory.mktemp("exported")
    files = {"onnx": tmp / "pets.onnx", "torchscript": tmp / "pets.pt"}
    for fmt, path in files.items():
        if fmt == "onnx" and not HAS["onnxruntime"]:
            continue
        assert main(["export", "--weights", str(pet_file), "--format", fmt, str(path)]) == 0
    if HAS["onnxruntime"]:
        import onnx
        from onnx import TensorProto, helper

        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
        files["foreign"] = tmp / "identity.onnx"
        onnx.save(helper.make_model(graph), str(files["foreign"]))
    return files


@pytest.fixture(scope="module")
def reference(pet_file) -> fasterrcnn.Detector:
    return fasterrcnn.create_model(weights=pet_file)


# --------------------------------------------------------------------------- load_exported


def _assert_same(ref: fasterrcnn.Detections, out: fasterrcnn.Detections) -> None:
    assert isinstance(out, fasterrcnn.Detections)
    assert (out.image_size, out.source) == (ref.image_size, ref.source)
    assert len(ref.boxes) > 10 and abs(len(ref.boxes) - len(out.boxes)) <= 1
    fraction = match_fraction(
        ref.boxes, ref.scores, out.boxes, out.scores, ref.category_ids, out.category_ids
    )
    assert fraction >= 0.99, f"{fraction:.3f} matched"
    names = dict(zip(out.category_ids.tolist(), out.class_names, strict=True))
    assert names.items() <= dict(zip(PETS.category_ids, PETS.names, strict=True)).items()


@pytest.fixture(scope="module")
def reference_detections(reference) -> list[fasterrcnn.Detections]:
    """The PyTorch model's detections of ``SOURCES[0]`` (a path) and ``SOURCES[1]`` (an array)."""
    return [reference.predict(SOURCES[0]), reference.predict(read_image(SOURCES[1]))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_exported_predicts_as_pytorch(backend, exported, reference, reference_detections):
    _needs(backend)
    model = fasterrcnn.load_exported(_graph(exported, backend), backend)
    assert isinstance(model, ExportedModel) and model.config == reference.config
    path, array = SOURCES[0], read_image(SOURCES[1])  # RGB
    _assert_same(reference_detections[0], model.predict(path))
    _assert_same(reference_detections[1], model.predict(array))
    both = model.predict([path, array], batch_size=2)
    assert isinstance(both, list) and len(both) == 2
    for ref, out in zip(reference_detections, both, strict=True):
        _assert_same(ref, out)


def test_load_exported_is_public():
    assert fasterrcnn.load_exported is fasterrcnn.export.load_exported
    assert "load_exported" in fasterrcnn.__all__ and "load_exported" in fasterrcnn.export.__all__


def test_load_exported_errors(exported, pet_file, tmp_path):
    cases = [
        (
            (exported["torchscript"], "tensorrt"),
            ("'tensorrt'", "onnxruntime, openvino, torchscript"),
        ),
        ((tmp_path / "none.onnx", "onnxruntime"), ("none.onnx", "no such file")),
        ((pet_file, "torchscript"), (str(pet_file), "not a TorchScript file")),
    ]
    if HAS["onnxruntime"]:
        cases += [
            ((exported["onnx"], "torchscript"), ("pets.onnx", "not a TorchScript file")),
            ((exported["torchscript"], "onnxruntime"), ("pets.pt", "onnxruntime cannot load")),
            ((exported["foreign"], "onnxruntime"), ("identity.onnx", "not a fasterrcnn export")),
        ]
    for (path, backend), needles in cases:
        with pytest.raises(RuntimeLoadError) as caught:
            fasterrcnn.load_exported(path, backend)
        message = str(caught.value)
        assert "\n" not in message and all(n in message for n in needles), message
    with pytest.raises(RuntimeLoadError, match="threads must be at least 1, not 0"):
        fasterrcnn.load_exported(exported["torchscript"], "torchscript", threads=0)


# --------------------------------------------------------------------------- eval --backend


@pytest.fixture(scope="module")
def pet_dataset(reference, tmp_path_factory) -> Path:
    """COCO annotations of ``EVAL_IMAGES`` made of the PyTorch model's moved detections."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id, path in enumerate(EVAL_IMAGES, 1):
        dets = reference.predict(path)
        height, width = dets.image_size
        images.append({"id": image_id, "file_name": path.name, "height": height, "width": width})
        for category in PETS.category_ids:
            for x1, y1, x2, y2 in dets.boxes[dets.category_ids == category][:12:2]:
                w, h = x2 - x1, y2 - y1
                dx1, dy1, dx2, dy2 = rng.uniform(-0.12, 0.12, 4) * [w, h, w, h]
                box = [x1 + dx1, y1 + dy1, x2 - x1 + dx2 - dx1, y2 - y1 + dy2 - dy1]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                    "bbox": [round(float(v), 2) for v in box], "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                })  # fmt: skip
    categories = [{"id": i, "name": n} for i, n in zip(PETS.category_ids, PETS.names, strict=True)]
    path = tmp_path_factory.mktemp("pet_dataset") / "pets.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))  # fmt: skip
    return path


def _eval(out: Path, dataset: Path, *options: object) -> tuple[dict, list[dict]]:
    """``eval`` on ``dataset``: its metrics and its results."""
    out.mkdir(parents=True, exist_ok=True)
    argv = ["eval", "--images", IMAGES, "--annotations", dataset, "--metrics",
            out / "metrics.json", "--results", out / "results.json", *options]  # fmt: skip
    assert main(list(map(str, argv))) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics, json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def pytorch_eval(pet_dataset, pet_file, tmp_path_factory) -> tuple[dict, list[dict]]:
    return _eval(tmp_path_factory.mktemp("eval_pytorch"), pet_dataset, "--weights", pet_file)


def _assert_same_metrics(ref: dict, out: dict) -> None:
    per_category = {c["name"]: c for c in ref.pop("per_category")}
    assert per_category.keys() == set(PETS.names)
    for row in out.pop("per_category"):
        want = per_category[row["name"]]
        assert row["instances"] == want["instances"] > 10
        assert abs(row["AP"] - want["AP"]) <= METRIC_TOLERANCE, (row, want)
        assert abs(row["AP50"] - want["AP50"]) <= METRIC_TOLERANCE, (row, want)
    assert ref.keys() == out.keys() and len(ref) == 12
    for name, value in ref.items():
        assert abs(out[name] - value) <= METRIC_TOLERANCE, (name, out[name], value)


def _boxes(results: list[dict], image_id: int) -> tuple[np.ndarray, ...]:
    rows = [r for r in results if r["image_id"] == image_id]
    xywh = np.array([r["bbox"] for r in rows], dtype=np.float64).reshape(-1, 4)
    return (
        np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
        np.array([r["score"] for r in rows]),
        np.array([r["category_id"] for r in rows]),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_backend_metrics_equal_pytorch(backend, exported, pytorch_eval, pet_dataset, tmp_path):
    _needs(backend)
    ref_metrics, ref_results = pytorch_eval
    assert 0.1 < ref_metrics["AP"] < 0.9 and 0.1 < ref_metrics["AR100"] < 0.95  # informative
    metrics, results = _eval(
        tmp_path, pet_dataset, "--backend", backend, "--weights", _graph(exported, backend)
    )
    _assert_same_metrics(dict(ref_metrics), metrics)
    for image_id in range(1, len(EVAL_IMAGES) + 1):
        ref_boxes, ref_scores, ref_ids = _boxes(ref_results, image_id)
        boxes, scores, ids = _boxes(results, image_id)
        assert len(ref_boxes) > 10
        assert match_fraction(ref_boxes, ref_scores, boxes, scores, ref_ids, ids) >= 0.99


@pytest.mark.slow  # two processes under torchrun
def test_eval_backend_in_two_processes(exported, pytorch_eval, pet_dataset, tmp_path):
    _needs("onnxruntime")
    args = ["eval", "--images", IMAGES, "--annotations", pet_dataset, "--backend",
            "onnxruntime", "--weights", exported["onnx"], "--metrics", tmp_path / "m.json"]  # fmt: skip
    proc = run_cli(args, tmp_path, processes=2)
    assert proc.returncode == 0, proc.stderr
    assert "2 process(es)" in proc.stdout
    _assert_same_metrics(dict(pytorch_eval[0]), json.loads((tmp_path / "m.json").read_text()))


# --------------------------------------------------------------------------- serve --backend


@pytest.mark.skipif(not (HAS_SERVE and HAS["onnxruntime"]), reason="needs serve and onnxruntime")
def test_serve_backend_answers_as_detect_backend(exported, tmp_path, one_thread, monkeypatch):
    from helpers.serving import cli_server, post_image, request

    onnx = exported["onnx"]
    out = tmp_path / "detect"
    argv = ["detect", *SOURCES, "--backend", "onnxruntime", "--weights", onnx, "--out", out,
            "--score-threshold", "0.1", "--no-draw"]  # fmt: skip
    assert main(list(map(str, argv))) == 0  # one thread, as the server below
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with cli_server(["--backend", "onnxruntime", "--weights", onnx], tmp_path) as port:
        info = request(port, "GET", "/v1/models").json()
        assert info["model"] == "pets" and info["device"] == "cpu"
        assert [c["name"] for c in info["classes"]] == list(PETS.names)
        for path in SOURCES:
            reply = post_image(port, path.read_bytes(), score_threshold=0.1)
            assert reply.status == 200, reply.body
            answer = reply.json()
            expected = json.loads((out / f"{path.stem}.json").read_text())
            assert answer["image"] == {"width": expected["width"], "height": expected["height"]}
            assert len(answer["detections"]) == len(expected["detections"]) > 10
            for got, want in zip(answer["detections"], expected["detections"], strict=True):
                assert (got["label"], got["category_id"], got["score"]) == (
                    want["class_name"], want["category_id"], want["score"],
                )  # fmt: skip
                box = got["box"]
                assert [box["xmin"], box["ymin"], box["xmax"], box["ymax"]] == want["box"]


# --------------------------------------------------------------------------- bad uses


def _one_line_error(capsys, argv: list[object], *needles: str) -> None:
    assert main(list(map(str, argv))) == 2
    lines = stderr_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("fasterrcnn: error:"), lines
    assert all(needle in lines[0] for needle in needles), lines[0]


EVAL = ["eval", "--images", IMAGES, "--annotations", ANN_FILE]
SERVE = ["serve", "--port", "0"]


def test_backend_errors_are_one_line(exported, pet_file, tmp_path, capsys):
    _one_line_error(capsys, [*EVAL, "--backend", "openvino"], "--backend openvino", "--weights")
    pt = exported["torchscript"]
    _one_line_error(
        capsys, [*EVAL, "--backend", "torchscript", "--weights", pet_file], str(pet_file),
        "not a TorchScript file",
    )  # fmt: skip
    _one_line_error(capsys, [*EVAL, "--backend", "torchscript", "--weights", pt, "--precision",
                             "bf16"], "--backend torchscript runs fp32 only")  # fmt: skip
    missing = tmp_path / "missing.onnx"
    _one_line_error(capsys, [*EVAL, "--backend", "openvino", "--weights", missing], "no such file")
    if not HAS_SERVE:
        return
    _one_line_error(capsys, [*SERVE, "--backend", "torchscript"], "--backend torchscript")
    _one_line_error(capsys, [*SERVE, "--backend", "torchscript", "--weights", pt, "--device",
                             "cuda"], "runs on the CPU (--device cpu), not cuda")  # fmt: skip
    if HAS["onnxruntime"]:
        onnx, foreign = exported["onnx"], exported["foreign"]
        _one_line_error(
            capsys, [*SERVE, "--backend", "torchscript", "--weights", onnx], str(onnx),
            "not a TorchScript file",
        )  # fmt: skip
        _one_line_error(
            capsys, [*SERVE, "--backend", "onnxruntime", "--weights", foreign], str(foreign),
            "not a fasterrcnn export",
        )  # fmt: skip
        _one_line_error(
            capsys, [*SERVE, "--backend", "onnxruntime", "--weights", pet_file], str(pet_file),
            "onnxruntime cannot load it",
        )  # fmt: skip


def test_model_is_not_needed_and_not_used(exported, tmp_path, capsys):
    """A preset named beside an exported file changes nothing and says so."""
    argv = ["detect", SOURCES[0], "--backend", "torchscript", "--weights", exported["torchscript"],
            "--model", RES18, "--out", tmp_path, "--no-draw", "--score-threshold", "0.1"]  # fmt: skip
    assert main(list(map(str, argv))) == 0
    err = capsys.readouterr().err
    assert f"--model {RES18} is not used" in err
    detections = json.loads((tmp_path / f"{SOURCES[0].stem}.json").read_text())["detections"]
    assert {d["class_name"] for d in detections} <= set(PETS.names)


def test_openvino_runs_bf16_where_the_cpu_has_it(exported):
    """``--precision bf16`` reaches OpenVINO, as the README's ``detect`` line has it."""
    _needs("openvino")
    if not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        pytest.skip("this CPU has no native bfloat16")
    argv = ["serve", "--backend", "openvino", "--weights", str(exported["onnx"]), "--precision",
            "bf16"]  # fmt: skip
    model = load_detector(build_parser().parse_args(argv), "cpu")
    assert isinstance(model, ExportedModel) and model.precision == "bf16"
