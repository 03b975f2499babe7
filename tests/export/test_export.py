"""Exported graphs against the PyTorch model, for every family's preset.

Each family's model (name-seeded weights in its own checkpoint format) is exported once to
ONNX and once to TorchScript (traced on a batch of 2 at 320 x 384); the files then run
through the engine (onnxruntime, OpenVINO, TorchScript) on real COCO images of three sizes,
an image without any detection, and a batch of 3, and must give the PyTorch model's
detections: >= 99% matched one to one (same class, IoU >= 0.99, |score difference| <= 1e-3).

To keep the run short the images are resized to a short side of 400 (the graph does not
depend on the input size; the default model is also checked at its own 800, marked slow).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IMAGES, TORCHVISION
from helpers.megengine_pickle import megengine_pickle_bytes
from helpers.models import model_zoo_pickle
from helpers.parity import match_fraction
from helpers.seeded import DATA, load_shapes, numpy_seeded

import fasterrcnn
from fasterrcnn.data.images import read_image
from fasterrcnn.export import export_model
from fasterrcnn.export.runtimes import ExportedModel
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.loop import run_inference
from fasterrcnn.ops.roi_align import roi_align

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
NAMES = ["000000000139", "000000000802", "000000010764"]  # 426x640, 640x424, 480x640


def _megengine(preset: str, folder: str, shapes: str, protocol: int) -> Callable[[Path], object]:
    def weights(tmp: Path) -> Path:
        path = tmp / f"{preset}.pkl"
        state = numpy_seeded(load_shapes(DATA / folder / shapes))
        path.write_bytes(megengine_pickle_bytes(state, protocol=protocol))
        return path

    return weights


def _torchvision(tmp: Path) -> Path:
    from helpers.seeded import torch_seeded

    path = tmp / "torchvision.pth"
    torch.save(
        torch_seeded(load_shapes(DATA / "torchvision" / "torchvision_state_dict_shapes.json")), path
    )
    return path


def _detectron2(tmp: Path) -> Path:
    path = tmp / "detectron2.pkl"
    path.write_bytes(model_zoo_pickle())
    return path


FAMILIES = {
    "torchvision": (TORCHVISION, _torchvision, None),
    "megengine_0x": ("faster_rcnn_res50_coco_1x_800size", _megengine("faster_rcnn_res50_coco_1x_800size", "megengine_v0", "megengine_v0_state_dict_shapes.json", 4), 0.08),
    "megengine_1x": ("faster_rcnn_res50_coco_1x_800size_mge1", _megengine("faster_rcnn_res50_coco_1x_800size_mge1", "megengine_v1", "megengine_v1_state_dict_shapes.json", 5), None),
    "detectron2": ("detectron2_faster_rcnn_R_50_FPN_1x", _detectron2, None),
}  # fmt: skip
# MegEngine 0.x's name-seeded classifier scores every RoI of a uniform image above its 0.05
# threshold (up to 0.075; real images reach 0.14-0.31): for an image without detections its
# model here keeps scores above 0.08.


def _images() -> list[np.ndarray]:
    """Three sizes, a small uniform image (no detection), and two more of the first image's
    size, so that a batch of 3 holds images of one padded size."""
    images = [read_image(IMAGES / f"{name}.jpg") for name in NAMES]
    blank = np.full((40, 60, 3), 127, dtype=np.uint8)
    first = images[0]
    return [*images, blank, np.ascontiguousarray(first[:, ::-1]), np.ascontiguousarray(first[::-1])]


IMAGES_UNDER_TEST = _images()


def _with_settings(
    model: fasterrcnn.Detector, score_threshold: float | None, short_side: int | None = 400
) -> fasterrcnn.Detector:
    """The same network and weights, fed images resized to ``short_side`` (None: the model's
    own input size), keeping detections from ``score_threshold`` (None: the model's own)."""
    config = model.config
    if short_side is not None:
        max_side = round(short_side * 5 / 3)
        config = replace(
            config, input=replace(config.input, short_side=short_side, max_side=max_side)
        )
    if score_threshold is not None:
        config = replace(
            config, postprocess=replace(config.postprocess, score_threshold=score_threshold)
        )
    variant = fasterrcnn.Detector(config)
    variant.load_state_dict(model.state_dict())
    return variant.eval().to(memory_format=torch.channels_last)


def _run(model, batch_size: int) -> list[Detections]:
    results = list(run_inference(model, IMAGES_UNDER_TEST, batch_size=batch_size))
    assert all(r.detections is not None for r in results)
    return [r.detections for r in results]  # type: ignore[misc]


def _assert_same(expected: list[Detections], actual: list[Detections]) -> None:
    for i, (ref, out) in enumerate(zip(expected, actual, strict=True)):
        assert abs(len(ref) - len(out)) <= max(1, len(ref) // 100), (
            f"image {i}: {len(ref)} vs {len(out)}"
        )
        fraction = match_fraction(
            ref.boxes, ref.scores, out.boxes, out.scores, ref.category_ids, out.category_ids
        )
        assert fraction >= 0.99, f"image {i}: {fraction:.3f} of {len(ref)} detections matched"


# Every family exports, in the slow run (CI); the default run exports the small native model
# to every backend through the command line (tests/export/test_export_cli.py).
@pytest.fixture(
    scope="module", params=[pytest.param(name, marks=pytest.mark.slow) for name in FAMILIES]
)
def family(request, tmp_path_factory):
    """The family's PyTorch model, its detections (batch 1) and a folder for its exports."""
    preset, make_weights, score_threshold = FAMILIES[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    model = _with_settings(
        fasterrcnn.create_model(preset, weights=make_weights(tmp)), score_threshold
    )
    expected = _run(model, batch_size=1)
    assert all(len(d) > 0 for i, d in enumerate(expected) if i != 3) and len(expected[3]) == 0
    return model, expected, tmp


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime is not installed")
def test_onnx_matches_pytorch(family):
    model, expected, tmp = family
    path = export_model(model, tmp / "model.onnx", "onnx")
    runtime = ExportedModel(path, "onnxruntime")
    assert runtime.config == model.config  # the file carries its configuration
    # The flipped copies share a batch of 3 (traced at 2); the other images run alone.
    _assert_same(expected, _run(runtime, batch_size=3))
    if HAS_OPENVINO:
        _assert_same(expected, _run(ExportedModel(path, "openvino"), batch_size=3))


def test_torchscript_matches_pytorch(family):
    model, expected, tmp = family
    path = export_model(model, tmp / "model.pt", "torchscript")
    _assert_same(expected, _run(ExportedModel(path, "torchscript"), batch_size=3))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime is not installed")
def test_default_model_onnx_at_full_size(tmp_path):
    """The default preset (MegEngine 0.x) at its own 800 x 1333 input (with the family's
    score threshold, for the uniform image: see FAMILIES)."""
    preset, make_weights, score_threshold = FAMILIES["megengine_0x"]
    model = _with_settings(
        fasterrcnn.create_model(preset, weights=make_weights(tmp_path)), score_threshold, None
    )
    expected = _run(model, batch_size=1)
    path = export_model(model, tmp_path / "model.onnx", "onnx")
    _assert_same(expected, _run(ExportedModel(path, "onnxruntime"), batch_size=3))


@pytest.mark.parametrize(("sampling_ratio", "border"), [(0, "clamp"), (2, "zero"), (2, "clamp")])
def test_traced_roi_align_serves_any_roi_count(sampling_ratio, border):
    """Traced on no RoI at all (as a pyramid level of the tracing batch may be), the graph
    pools any RoIs as the eager op does, adaptive grids and empty RoIs included."""

    class Pool(torch.nn.Module):
        def forward(self, features, rois):
            return roi_align(features, rois, 7, 0.25, sampling_ratio, True, border)

    features = torch.randn(2, 4, 20, 30)
    traced = torch.jit.trace(Pool(), (features, torch.zeros(0, 5)), check_trace=False)
    rois = torch.tensor(
        [[0, 3.0, 4.0, 50.0, 60.0], [1, 10.0, 10.0, 119.0, 79.0], [0, 5.0, 5.0, 5.0, 5.0]]
    )
    torch.testing.assert_close(traced(features, rois), Pool()(features, rois))
    assert traced(features, rois[:0]).shape == (0, 4, 7, 7)
