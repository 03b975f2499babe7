"""MegEngine's DetEvaluator semantics: resize rule, process_inputs, and the detection array."""

from __future__ import annotations

import numpy as np
import pytest

from fasterrcnn.compat.megengine import detections_array, get_hw_by_short_size, process_inputs
from fasterrcnn.config import PostprocessConfig


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((426, 640), (800, 1202)),  # 640 * 800 / 426 = 1201.88 -> 1202 (round, not floor)
        ((640, 424), (1208, 800)),
        ((500, 2000), (333, 1333)),  # long side capped: scale 1333 / 2000
        ((800, 1333), (800, 1333)),
    ],
)
def test_resize_rule(hw, expected):
    assert get_hw_by_short_size(*hw, 800, 1333) == expected


def test_process_inputs_layout_and_flip():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    data, im_info = process_inputs(image, 80, 1333)
    assert data.shape == (1, 3, 80, 120) and data.dtype == np.float32
    np.testing.assert_array_equal(im_info, np.array([[80, 120, 40, 60]], np.float32))
    assert data.min() >= 0 and data.max() <= 255  # raw BGR pixels, not normalized
    flipped, _ = process_inputs(image, 80, 1333, flip=True)
    np.testing.assert_array_equal(flipped, data[..., ::-1])


def _megengine_loop(scores, boxes, thresh=0.05, nms_thresh=0.5, cap=100):
    """DetEvaluator.predict written as MegEngine does it (py_cpu_nms, no +1)."""
    dets = []
    for c in range(scores.shape[1]):
        idx = np.where(scores[:, c] > thresh)[0]
        rows = np.hstack([boxes[idx, c], scores[idx, c, None]]).astype(np.float32)
        order = rows[:, 4].argsort()[::-1]
        keep = []
        while order.size:
            i = order[0]
            keep.append(i)
            xx1 = np.maximum(rows[i, 0], rows[order[1:], 0])
            yy1 = np.maximum(rows[i, 1], rows[order[1:], 1])
            xx2 = np.minimum(rows[i, 2], rows[order[1:], 2])
            yy2 = np.minimum(rows[i, 3], rows[order[1:], 3])
            inter = np.maximum(0.0, xx2 - xx1) * np.maximum(0.0, yy2 - yy1)
            area = (rows[:, 2] - rows[:, 0]) * (rows[:, 3] - rows[:, 1])
            iou = inter / (area[i] + area[order[1:]] - inter)
            order = order[1:][iou <= nms_thresh]
        dets += [[*rows[k], c] for k in keep]
    if len(dets) > cap:
        dets = sorted(dets, key=lambda d: d[4], reverse=True)[:cap]
    return np.array(dets, dtype=np.float64).reshape(-1, 6)


@pytest.mark.parametrize("num_rois", [30, 400])
def test_detections_array_matches_megengine_loop(num_rois):
    rng = np.random.default_rng(num_rois)
    scores = rng.random((num_rois, 4)).astype(np.float32) ** 3
    xy = rng.uniform(0, 200, size=(num_rois, 4, 2))
    wh = rng.uniform(5, 60, size=(num_rois, 4, 2))
    boxes = np.concatenate([xy, xy + wh], axis=2).astype(np.float32)
    expected = _megengine_loop(scores, boxes)
    got = detections_array(scores, boxes, PostprocessConfig(min_size=None, clip_frame="original"))
    assert got.dtype == np.float64
    # 30 RoIs: under the cap, rows stay in class order; 400: cut to 100 by score.
    assert (len(expected) < 100) == (num_rois == 30)
    np.testing.assert_array_equal(got, expected)
