"""Parity with torchvision's fasterrcnn_resnet50_fpn under the name-seeded weights.

References: tests/fixtures/torchvision (torchvision 0.28 on pre-resized PNGs, see its README in
../shared/reference/torchvision-r50-fpn) and tests/fixtures/torchvision_jpeg (torchvision 0.29 on
the raw JPEGs through its own resize, made by tests/tools/make_torchvision_jpeg_reference.py).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import IMAGES
from helpers.parity import match_fraction
from helpers.seeded import DATA

NAMES = ["000000000139", "000000000802", "000000010764"]


def _check(result, ref) -> tuple[float, float]:
    dets = match_fraction(
        ref["boxes"], ref["scores"], result.boxes, result.scores, ref["labels"], result.category_ids
    )
    props = match_fraction(
        ref["proposals"], ref["proposal_scores"], result.proposals, result.proposal_scores
    )
    return dets, props


@pytest.mark.parametrize("name", NAMES)
def test_resized_png_matches_torchvision(tv_model, name):
    ref = np.load(DATA / "torchvision" / f"{name}.npz")
    rgb = cv2.imread(str(DATA / "torchvision" / f"{name}.png"))[:, :, ::-1]
    result = tv_model.predict(np.ascontiguousarray(rgb), return_proposals=True)
    assert len(result.boxes) == len(ref["boxes"]) == 100
    assert len(result.proposals) == len(ref["proposals"]) == 1000
    dets, props = _check(result, ref)
    assert dets >= 0.99 and props >= 0.99, (dets, props)


def test_fpn_statistics_match_torchvision(tv_model):
    ref = np.load(DATA / "torchvision" / "000000000139.npz")
    rgb = cv2.imread(str(DATA / "torchvision" / "000000000139.png"))[:, :, ::-1]
    batch = tv_model.preprocess([np.ascontiguousarray(rgb)])
    assert list(batch.padded_size) == list(ref["padded_size"])
    assert list(batch.image_sizes[0]) == list(ref["input_size"])
    features = tv_model.backbone(batch.tensor)
    for level, key in zip(features, ["0", "1", "2", "3", "pool"], strict=True):
        assert level.mean().item() == pytest.approx(ref[f"fpn_{key}_mean"], rel=1e-4, abs=1e-6)
        assert level.std().item() == pytest.approx(ref[f"fpn_{key}_std"], rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_raw_jpeg_matches_torchvision(tv_model, name):
    ref = np.load(DATA / "torchvision_jpeg" / f"{name}.npz")
    result = tv_model.predict(IMAGES / f"{name}.jpg", return_proposals=True)
    batch = tv_model.preprocess([cv2.imread(str(IMAGES / f"{name}.jpg"))])
    assert list(batch.image_sizes[0]) == list(ref["input_size"])
    dets, props = _check(result, ref)
    assert dets >= 0.99 and props >= 0.99, (dets, props)
