"""Parity with MegEngine/Models' Faster R-CNN (0.x, 0.x SyncBN, 1.x, ResNet-18, ResNeXt-101).

Each case writes the name-seeded weights of its reference as a MegEngine hub file (a pickle
naming numpy 1.x globals), loads it through ``create_model(preset, weights=path)``, runs
``predict(jpg, return_proposals=True)`` and compares with MegEngine's recorded outputs; the
MegEngine interface (``process_inputs``, raw scores/boxes, ``predict``) is compared too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import IMAGES
from helpers.megengine_pickle import megengine_pickle_bytes
from helpers.parity import match_fraction
from helpers.seeded import DATA, load_shapes, numpy_seeded

import fasterrcnn
from fasterrcnn.compat.megengine import pred_scores_and_boxes, predict, process_inputs


@dataclass(frozen=True)
class Case:
    preset: str
    folder: str
    shapes: str
    images: tuple[str, ...]
    grouped_as_4d: bool = False
    protocol: int = 4


ALL3 = ("000000000139", "000000000802", "000000010764")
CASES = [
    Case("faster_rcnn_res50_coco_1x_800size", "megengine_v0",
         "megengine_v0_state_dict_shapes.json", ALL3),
    Case("faster_rcnn_res50_coco_1x_800size_syncbn", "megengine_v0_syncbn",
         "megengine_v0_syncbn_state_dict_shapes.json", ("000000000139",), protocol=5),
    Case("faster_rcnn_res50_coco_1x_800size_mge1", "megengine_v1",
         "megengine_v1_state_dict_shapes.json", ALL3, protocol=5),
    Case("faster_rcnn_res18_coco_3x_800size", "megengine_variants/faster_rcnn_res18_coco_3x_800size",
         "faster_rcnn_res18_coco_3x_800size_state_dict_shapes.json", ("000000000139",)),
    Case("faster_rcnn_resx101_coco_2x_800size_mge16",
         "megengine_variants/faster_rcnn_resx101_coco_2x_800size",
         "faster_rcnn_resx101_coco_2x_800size_state_dict_shapes.json", ("000000000139",),
         grouped_as_4d=True),
]  # fmt: skip

_MODELS: dict[str, fasterrcnn.Detector] = {}


def _model(case: Case, tmp_dir: Path) -> fasterrcnn.Detector:
    """The preset loaded from a MegEngine-format hub file of the seeded weights (cached)."""
    if case.preset not in _MODELS:
        _MODELS.clear()  # one large model alive at a time
        weights = numpy_seeded(load_shapes(DATA / case.folder / case.shapes), case.grouped_as_4d)
        path = tmp_dir / f"{case.preset}.pkl"
        path.write_bytes(megengine_pickle_bytes(weights, protocol=case.protocol))
        _MODELS[case.preset] = fasterrcnn.create_model(case.preset, weights=path)
    return _MODELS[case.preset]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("megengine")


# The default run checks every case but the ResNeXt-101 on the first image; the slow run (CI)
# every case on every image.
SLOW_PRESETS = {"faster_rcnn_resx101_coco_2x_800size_mge16"}
PAIRS = [
    pytest.param(
        case,
        image,
        id=f"{case.preset}-{image}",
        marks=[pytest.mark.slow] if case.preset in SLOW_PRESETS or image != ALL3[0] else [],
    )
    for case in CASES
    for image in case.images
]


@pytest.mark.parametrize(("case", "image"), PAIRS)
def test_predict_matches_megengine(case, image, weights_dir):
    model = _model(case, weights_dir)
    ref = np.load(DATA / case.folder / f"{image}.npz")
    result = model.predict(IMAGES / f"{image}.jpg", return_proposals=True)

    dets = ref["dets"]
    assert len(result.boxes) == len(dets)
    det_match = match_fraction(
        dets[:, :4], dets[:, 4], result.boxes, result.scores, ref["category_ids"],
        result.category_ids,
    )  # fmt: skip
    proposal_match = match_fraction(
        ref["proposals"], ref["proposal_scores"], result.proposals, result.proposal_scores
    )
    assert det_match >= 0.99, det_match
    assert proposal_match >= 0.99, proposal_match


# MegEngine's own interface for the default preset in the default run (every preset's
# predict is checked above), for every preset in the slow run.
@pytest.mark.parametrize(
    "case",
    [c if c.preset == CASES[0].preset else pytest.param(c, marks=pytest.mark.slow) for c in CASES],
    ids=[c.preset for c in CASES],
)
def test_megengine_interface_matches(case, weights_dir):
    image = case.images[0]
    model = _model(case, weights_dir)
    ref = np.load(DATA / case.folder / f"{image}.npz")
    data, im_info = process_inputs(cv2.imread(str(IMAGES / f"{image}.jpg")), 800, 1333)
    assert im_info.dtype == np.float32 and np.array_equal(im_info, ref["im_info"])
    assert list(data.shape) == list(ref["data_shape"]) and data.dtype == np.float32
    np.testing.assert_allclose(
        data.mean(axis=(0, 2, 3), dtype=np.float64), ref["data_channel_mean"], rtol=1e-12
    )
    np.testing.assert_allclose(
        data.std(axis=(0, 2, 3), dtype=np.float64), ref["data_channel_std"], rtol=1e-12
    )

    scores, boxes = pred_scores_and_boxes(model, data, im_info)
    np.testing.assert_allclose(scores[:50], ref["pred_score_top"], atol=1e-4)
    np.testing.assert_allclose(boxes[:50], ref["pred_boxes_top"], atol=1e-4, rtol=1e-4)

    dets = predict(model, data, im_info)
    expected = ref["dets"]
    assert dets.dtype == np.float64 and dets.shape == expected.shape
    # More than 100 detections survive in every reference, so the cap sorted them by score.
    assert np.all(np.diff(dets[:, 4]) <= 0)
    # The same rows; scores 1e-5 apart may swap places.
    matched = match_fraction(
        expected[:, :4], expected[:, 4], dets[:, :4], dets[:, 4], expected[:, 5], dets[:, 5]
    )
    assert matched >= 0.99, matched
