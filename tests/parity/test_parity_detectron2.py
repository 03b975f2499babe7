"""Parity with detectron2's COCO-Detection/faster_rcnn_R_50_FPN_1x under name-seeded weights.

The reference (tests/fixtures/detectron2, from ../shared/reference/detectron2-r50-fpn) is
detectron2's ``DefaultPredictor`` on three COCO images. The weights are its recipe (the
torchvision table on detectron2's keys, the stem conv times 2**-6), written as a model-zoo
``.pkl``: ``{"model": {name: float32 ndarray}, "__author__": ...}`` pickled with numpy 1.x
globals, read through the restricted unpickler.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IMAGES
from helpers.megengine_pickle import globals_in
from helpers.models import DETECTRON2_REFERENCE, model_zoo_pickle
from helpers.parity import match_fraction

import fasterrcnn
from fasterrcnn.data.images import read_image
from fasterrcnn.data.transforms import resize_pixels
from fasterrcnn.modeling.roi_heads import assign_levels

PRESET = "detectron2_faster_rcnn_R_50_FPN_1x"
NAMES = ["000000000139", "000000000802", "000000010764"]
REF = DETECTRON2_REFERENCE


@pytest.fixture(scope="module")
def d2_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("detectron2") / "model_final_seeded.pkl"
    path.write_bytes(model_zoo_pickle())
    return path


@pytest.fixture(scope="module")
def d2_model(d2_file) -> fasterrcnn.Detector:
    return fasterrcnn.create_model(PRESET, weights=d2_file)


def test_model_zoo_pickle_names_only_numpy_globals(d2_file):
    assert globals_in(d2_file.read_bytes()) <= {
        "numpy.core.multiarray._reconstruct",
        "numpy.ndarray",
        "numpy.dtype",
        "_codecs.encode",
    }


@pytest.mark.parametrize("name", NAMES)
def test_resize_is_bit_identical(name):
    ref = np.load(REF / f"{name}.npz")
    cfg = fasterrcnn.get_preset(PRESET).config.input
    pixels = resize_pixels(read_image(IMAGES / f"{name}.jpg"), cfg)  # (3, h, w) uint8 BGR
    bgr = np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())
    assert list(bgr.shape[:2]) == list(ref["input_size"])
    assert hashlib.sha256(bgr.tobytes()).hexdigest() == str(ref["input_sha256"])


@pytest.mark.parametrize("name", NAMES)
def test_predict_matches_detectron2(d2_model, name):
    ref = np.load(REF / f"{name}.npz")
    result = d2_model.predict(IMAGES / f"{name}.jpg", return_proposals=True)
    assert len(result.boxes) == len(ref["boxes"]) == 100
    assert len(result.proposals) == len(ref["proposals"]) == 1000
    dets = match_fraction(
        ref["boxes"], ref["scores"], result.boxes, result.scores,
        ref["category_ids"], result.category_ids,
    )  # fmt: skip
    props = match_fraction(
        ref["proposals"], ref["proposal_scores"], result.proposals, result.proposal_scores
    )
    # Rounding-level agreement: one-to-one at IoU 0.999 and scores within 1e-5.
    tight = match_fraction(
        ref["boxes"], ref["scores"], result.boxes, result.scores,
        ref["category_ids"], result.category_ids, min_iou=0.999, max_score_diff=1e-5,
    )  # fmt: skip
    assert dets == props == 1.0 and tight >= 0.99, (dets, props, tight)


@pytest.mark.parametrize("name", NAMES)
def test_fpn_and_probe_boxes_match_detectron2(d2_model, name):
    """FPN statistics, and the box head on fixed boxes that reach P3-P5 (the proposals of
    these weights are all pooled from P2)."""
    ref = np.load(REF / f"{name}.npz")
    batch = d2_model.preprocess([read_image(IMAGES / f"{name}.jpg")])
    assert list(batch.tensor.shape[-2:]) == list(ref["padded_size"])
    with torch.inference_mode():
        features = d2_model.backbone(batch.tensor)
        for level, feature in zip(range(2, 7), features, strict=True):
            assert feature.mean().item() == pytest.approx(ref[f"fpn_p{level}_mean"], abs=1e-5)
            assert feature.std().item() == pytest.approx(ref[f"fpn_p{level}_std"], rel=1e-5)
        boxes = torch.from_numpy(ref["probe_boxes"])
        levels = assign_levels(boxes, d2_model.config.pooler, 2, 5)
        rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)
        logits, deltas = d2_model.roi_heads(features[:4], rois)
    assert levels.tolist() == ref["probe_levels"].tolist()
    assert set(levels.tolist()) == {2, 3, 4, 5}
    np.testing.assert_allclose(logits.numpy(), ref["probe_class_logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        deltas.reshape(len(boxes), -1).numpy(), ref["probe_box_deltas"], atol=1e-4, rtol=0
    )
