"""Detection on the frames of a video file, a stream or a camera.

Frames are decoded in the reader's thread (so decoding overlaps inference) and run through
the same loop as images (:func:`~fasterrcnn.inference.loop.run_inference`, batches of
``batch_size`` frames), a few frames in memory at a time. :func:`detect_video` writes, per
source, ``NAME.jsonl`` (one line per frame run: ``{"frame": i, "time": seconds,
"detections": [...]}``, and ``"skipped": [...]`` where a live source's frames were dropped
between the line before and this frame) and, unless ``draw`` is off, ``NAME.mp4`` (the
frames with their boxes drawn, at the source's rate divided by the stride, the source's size).

A run ends at the end of the source, after ``max_frames`` frames, on Ctrl-C / SIGTERM (the
outputs are closed: a playable video, whole JSON lines), or on a decoding error (the frames
before it are written; the error is in the run's ``error``).
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from fasterrcnn.data.video import VideoError, VideoFrame, VideoReader, VideoWriter
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.drawing import draw_detections
from fasterrcnn.inference.loop import run_inference
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.inference.tracking import LOW_SCORE

__all__ = ["VideoError", "VideoRun", "detect_video", "open_video", "video_detections"]

Tracker = Callable[[Detections], Detections]  # adds track_ids to one frame's detections


@dataclass
class VideoRun:
    """What a run over one video did: frames run, detections, frames dropped (live sources),
    seconds, whether Ctrl-C / SIGTERM ended it, the one-line error that ended it early, and
    the files written."""

    source: str
    frames: int = 0
    detections: int = 0
    dropped: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    error: str | None = None
    outputs: list[Path] = field(default_factory=list)


def video_detections(
    model: BatchDetector,
    reader: VideoReader,
    *,
    batch_size: int = 1,
    score_threshold: float | None = None,
    tracker: Tracker | None = None,
) -> Iterator[tuple[VideoFrame, Detections]]:
    """Each frame of ``reader`` with its detections (``frame`` and ``time`` set; track ids
    when a ``tracker`` is given), in order. A :class:`VideoError` of the reader is raised
    after the frames before it. A tracker sees the detections down to its ``LOW_SCORE``
    (ByteTrack associates low-score boxes too); those below ``score_threshold`` are dropped
    after it."""
    pending: deque[VideoFrame] = deque()
    model_threshold = score_threshold
    if tracker is not None and score_threshold is not None:
        model_threshold = min(score_threshold, LOW_SCORE)

    def images() -> Iterator[np.ndarray]:
        for frame in reader:
            pending.append(frame)
            yield frame.image

    for result in run_inference(
        model, images(), batch_size=batch_size, score_threshold=model_threshold,
        chunk_size=batch_size,
    ):  # fmt: skip
        frame = pending.popleft()
        if result.detections is None:  # a frame is an array: it cannot fail to load
            raise VideoError(f"{reader.info.source}: frame {frame.index}: {result.error}")
        detections = result.detections
        detections.source, detections.frame, detections.time = (
            reader.info.source, frame.index, frame.time,
        )  # fmt: skip
        if tracker is not None:
            detections = tracker(detections)
            if score_threshold is not None:
                detections = detections.select(detections.scores >= score_threshold)
        yield frame, detections


def open_video(
    source: Path | str | int,
    *,
    stride: int = 1,
    start: float = 0.0,
    max_frames: int | None = None,
    timeout: float = 10.0,
) -> VideoReader:
    """The reader of a video file, a stream URL or a camera index. A live source (a URL, a
    camera) keeps only its newest frame, so that a model slower than the source drops frames
    instead of queueing them, and starts where it is (``start`` is for files). A
    :class:`VideoError` names a source that cannot be opened."""
    live = isinstance(source, (int, str))
    return VideoReader(
        source, stride=stride, start=0.0 if live else start, max_frames=max_frames,
        timeout=timeout, latest_only=live,
    )  # fmt: skip


def detect_video(
    model: BatchDetector,
    reader: VideoReader,
    out: Path,
    stem: str,
    *,
    batch_size: int = 1,
    score_threshold: float | None = None,
    draw: bool = True,
    tracker: Tracker | None = None,
    progress: bool = True,
) -> VideoRun:
    """Run ``model`` on ``reader``'s frames and write ``out/<stem>.jsonl`` and, with
    ``draw``, ``out/<stem>.mp4`` (see the module docstring); a run that gets no frame leaves
    neither (``run.outputs`` is empty). An output that cannot be written is an ``OSError``."""
    info = reader.info
    run = VideoRun(info.source)
    lines_path = out / f"{stem}.jsonl"
    run.outputs.append(lines_path)
    writer: VideoWriter | None = None
    if draw:
        rate = info.rate if info.rate else Fraction(info.fps or 25.0)
        writer = VideoWriter(out / f"{stem}.mp4", rate / reader.stride, info.width, info.height)
        run.outputs.append(out / f"{stem}.mp4")
    total = None if info.frames is None else _frames_to_run(info.frames, reader)
    bar = tqdm(total=total, unit="frame", file=sys.stderr, disable=not progress, leave=False,
               desc=Path(info.source).name if not info.live else info.source)  # fmt: skip
    start = time.perf_counter()
    reported = 0

    def write(frame: VideoFrame, detections: Detections, skipped: list[int],
              drawn: np.ndarray | None) -> None:  # fmt: skip
        _write_line(lines, frame, detections, skipped)
        if writer is not None and drawn is not None:
            writer.write(drawn)
        run.frames += 1
        run.detections += len(detections)

    try:
        # A frame's line and drawn frame are written by another thread, which Ctrl-C and
        # SIGTERM (a KeyboardInterrupt in this one) do not interrupt: both or neither are
        # written, and leaving the executor waits for them.
        with open(lines_path, "w") as lines, bar, ThreadPoolExecutor(1) as output:
            for frame, detections in video_detections(
                model, reader, batch_size=batch_size, score_threshold=score_threshold,
                tracker=tracker,
            ):  # fmt: skip
                # the frames dropped between the line before and this frame (those dropped
                # while it ran come after it: the next line's)
                skipped = [i for i in reader.skipped[reported:] if i < frame.index]
                reported += len(skipped)
                drawn = None
                if writer is not None:
                    drawn = draw_detections(frame.image, detections, channels="RGB")
                output.submit(write, frame, detections, skipped, drawn).result()
                bar.update()
    except KeyboardInterrupt:
        run.interrupted = True
    except VideoError as err:
        run.error = str(err)
    finally:
        if writer is not None:
            writer.close()
        if run.frames == 0:  # no frame came (an empty file, a stream stopped at once)
            for path in run.outputs:
                path.unlink(missing_ok=True)
            run.outputs.clear()
        run.dropped = len(reader.skipped)
        run.seconds = time.perf_counter() - start
    return run


def _frames_to_run(frames: int, reader: VideoReader) -> int:
    """How many frames of ``frames`` a run with the reader's stride and limit takes (its
    start time aside)."""
    count = -(-frames // reader.stride)
    return count if reader.max_frames is None else min(count, reader.max_frames)


def _write_line(
    lines: TextIO, frame: VideoFrame, detections: Detections, skipped: list[int]
) -> None:
    entry: dict[str, Any] = {"frame": frame.index, "time": round(frame.time, 6)}
    if skipped:
        entry["skipped"] = skipped
    entry["detections"] = detections.detection_dicts()
    lines.write(json.dumps(entry) + "\n")
    lines.flush()  # a line is whole on disk even if the run is stopped next
