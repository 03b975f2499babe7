"""Tracks: on a synthetic sequence of objects with known identities (two of one class whose
paths cross, one hidden for three frames, detections listed in a shuffled order, boxes jittered)
every object keeps one track id and no two objects share one; the JSON and the drawing carry
the ids; a missing library is a one-line error."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.drawing import draw_detections

pytest.importorskip("trackers")
from fasterrcnn.inference.tracking import MISSING_TRACKERS, ByteTracker, check_tracking

FRAMES = 30
SIZE = (480, 640)  # (h, w)


def _objects(frame: int) -> dict[int, tuple[list[float], int]]:
    """identity -> (xyxy box, category id) at ``frame``: persons 0 and 1 cross paths, car 2
    drives on and is hidden at frames 12 to 14."""
    t = frame / (FRAMES - 1)
    out = {
        0: ([40 + 480 * t, 200, 100 + 480 * t, 330], 1),
        1: ([520 - 480 * t, 210, 580 - 480 * t, 340], 1),
        2: ([50 + 200 * t, 40, 170 + 200 * t, 110], 3),
    }
    if 12 <= frame <= 14:
        del out[2]
    return out


def _frame(frame: int, rng: np.random.Generator) -> tuple[Detections, list[int]]:
    objects = _objects(frame)
    identities = list(objects)
    rng.shuffle(identities)
    boxes = np.array([objects[i][0] for i in identities], np.float32)
    boxes += rng.normal(0, 1.5, boxes.shape).astype(np.float32)
    categories = np.array([objects[i][1] for i in identities], np.int64)
    detections = Detections(
        boxes=boxes,
        scores=rng.uniform(0.75, 0.95, len(identities)).astype(np.float32),
        category_ids=categories,
        class_names=["person" if c == 1 else "car" for c in categories],
        image_size=SIZE,
        frame=frame,
        time=frame / 10,
    )
    return detections, identities


def test_every_object_keeps_one_track_id() -> None:
    rng = np.random.default_rng(0)
    tracker = ByteTracker(frame_rate=10)
    seen: dict[int, set[int]] = {0: set(), 1: set(), 2: set()}
    unconfirmed = 0
    for frame in range(FRAMES):
        detections, identities = _frame(frame, rng)
        tracked = tracker(detections)
        assert tracked.track_ids is not None and len(tracked.track_ids) == len(identities)
        np.testing.assert_array_equal(tracked.boxes, detections.boxes)  # same order, same boxes
        for identity, track_id in zip(identities, tracked.track_ids, strict=True):
            if track_id < 0:
                unconfirmed += 1
            else:
                seen[identity].add(int(track_id))
    assert all(len(ids) == 1 for ids in seen.values()), seen  # through the crossing, the gap
    assert len({next(iter(ids)) for ids in seen.values()}) == 3  # one id per object
    assert unconfirmed <= 3  # only while the tracks are being confirmed


def test_ids_in_json_and_drawing() -> None:
    rng = np.random.default_rng(1)
    tracker = ByteTracker(frame_rate=10)
    tracked = [tracker(_frame(frame, rng)[0]) for frame in range(3)][-1]
    entries = tracked.detection_dicts()
    assert [e["track_id"] for e in entries] == [int(i) for i in tracked.track_ids]
    assert all(isinstance(e["track_id"], int) for e in entries)
    unconfirmed = Detections(**{**tracked.__dict__, "track_ids": np.array([-1, 4, 0])})
    assert [e["track_id"] for e in unconfirmed.detection_dicts()] == [None, 4, 0]
    image = np.zeros((*SIZE, 3), np.uint8)
    with_ids = draw_detections(image, tracked)
    without = draw_detections(image, Detections(**{**tracked.__dict__, "track_ids": None}))
    assert (with_ids != without).any()  # "#id" written after each label


def test_missing_library_is_one_line(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trackers" else real(name)
    )
    with pytest.raises(ImportError) as caught:
        check_tracking()
    assert str(caught.value) == MISSING_TRACKERS and "\n" not in MISSING_TRACKERS
