"""Object tracks across a video's frames: ByteTrack, as the ``trackers`` library (Roboflow's,
on ``supervision``'s detections) implements it.

:class:`ByteTracker` takes each frame's detections in order and gives every detection a
``track_id`` stable across frames, or -1 while its track is not confirmed yet (ByteTrack
confirms a track after ``minimum_consecutive_frames`` frames; written as ``null`` in JSON).
ByteTrack also associates low-score detections with existing tracks, so a caller should hand
it the detections down to :data:`LOW_SCORE` and keep the ones above its own threshold
afterwards (:func:`~fasterrcnn.inference.video_run.video_detections` does). Frame times are
passed on, so a stride or dropped frames do not shorten how long a lost track is kept.

``trackers`` names ``opencv-python`` as a requirement, which would install a second OpenCV
beside this package's headless one; install it without its requirements (see
:data:`MISSING_TRACKERS`): it runs on the headless OpenCV.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from typing import Any

import numpy as np

from fasterrcnn.inference.detections import Detections

LOW_SCORE = 0.1  # the lowest score ByteTrack's second association looks at
MISSING_TRACKERS = (
    "tracking needs the trackers library: pip install 'fasterrcnn[track]' && "
    "pip install --no-deps 'trackers>=2.6'"
)


def check_tracking() -> None:
    """A one-line ImportError naming what to install where ``trackers`` is missing."""
    if any(importlib.util.find_spec(name) is None for name in ("trackers", "supervision")):
        raise ImportError(MISSING_TRACKERS)


class ByteTracker:
    """``tracker(detections)``: the same detections with ``track_ids`` (N,) int64 set.

    ``frame_rate``: the rate at which frames are given (the source's rate / the stride);
    ``lost_frames``: how many frames' time a lost track is kept for re-identification.
    """

    def __init__(self, frame_rate: float = 30.0, lost_frames: int = 30) -> None:
        check_tracking()
        import supervision as sv
        from trackers import ByteTrackTracker

        self._sv: Any = sv
        self._tracker = ByteTrackTracker(lost_track_buffer=lost_frames, frame_rate=frame_rate)

    def __call__(self, detections: Detections) -> Detections:
        n = len(detections)
        frame = self._sv.Detections(
            xyxy=detections.boxes.astype(np.float32).reshape(n, 4),
            confidence=detections.scores.astype(np.float32),
            class_id=detections.category_ids.astype(np.int64),
            data={"index": np.arange(n)},
        )
        tracked = self._tracker.update(frame, timestamp=detections.time)
        track_ids = np.full(n, -1, dtype=np.int64)
        if len(tracked):  # the library may reorder: its "index" says which detection is which
            track_ids[np.asarray(tracked.data["index"])] = np.asarray(tracked.tracker_id)
        return replace(detections, track_ids=track_ids)
