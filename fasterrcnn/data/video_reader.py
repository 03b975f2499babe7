"""Video sources decoded by PyAV in a reader thread that runs ahead of the consumer, into
HxWx3 uint8 RGB frames; damage, stalls and missing frames raise one-line ``VideoError``s."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.video.reformatter import Interpolation

from fasterrcnn.data.video import (
    VIDEO_SUFFIXES,
    VideoError,
    VideoFrame,
    VideoInfo,
    ffmpeg_reason,
    first_video_stream,
    is_stream_url,
    is_video_file,
    open_source,
)

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoError",
    "VideoFrame",
    "VideoInfo",
    "VideoReader",
    "is_stream_url",
    "is_video_file",
]

QUEUE_FRAMES = 4  # decoded frames the reader thread may hold ahead of the consumer
CLOSE_WAIT = 2.0  # seconds close() waits for the reader thread (a stalled stream's ends later)
TAIL_BYTES = 64  # a last packet that ends this close to the end of its file was cut by it
_END = object()  # the reader thread's "no more frames"
# YUV to RGB with chroma interpolated to full width and rounded: swscale's default darkens
# every channel by about one level (3 ms more a 1280x720 frame, in the reader thread).
RGB_CONVERSION = Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND


class VideoReader:
    """The frames of a video file, a stream URL (see ``is_stream_url``) or a camera (an int N:
    /dev/videoN through FFmpeg's v4l2 input), decoded by one reader thread; a context manager.

    Iterating (once) yields every ``stride``-th frame from ``start`` seconds on (a file seeks
    to the keyframe at or before ``start`` and decodes on from there), at most ``max_frames``
    of them. The thread, started by the first ``next()``, decodes up to ``QUEUE_FRAMES`` frames
    ahead of the consumer; with ``latest_only`` it keeps only the newest, and the indices of
    the frames it replaced before the consumer took them go to ``skipped``. A live source that
    gives no frame for ``timeout`` seconds raises a stall ``VideoError``; a damaged file raises
    one after the frames before the damage.
    """

    def __init__(
        self,
        source: str | Path | int,
        *,
        stride: int = 1,
        start: float = 0.0,
        max_frames: int | None = None,
        timeout: float = 10.0,
        latest_only: bool = False,
    ) -> None:
        if stride < 1 or start < 0 or timeout <= 0 or (max_frames or 0) < 0:
            raise ValueError(
                f"bad stride {stride}, start {start}, timeout {timeout} or max_frames {max_frames}"
            )
        self.source, self.stride, self.start, self.max_frames = source, stride, start, max_frames
        self.timeout, self.latest_only = timeout, latest_only
        self.skipped: list[int] = []  # frames replaced, with ``latest_only``, before taken
        self._name, self._container = open_source(source, timeout)
        stream = first_video_stream(self._container)
        if stream is None:
            self._container.close()
            raise VideoError(f"{self._name}: has no video stream")
        self._stream, rate = stream, stream.average_rate or stream.guessed_rate
        live = isinstance(source, int) or (isinstance(source, str) and is_stream_url(source))
        self.info = VideoInfo(
            self._name,
            stream.width,
            stream.height,
            float(rate or 0),
            stream.frames or None,
            live,
            rate,
        )
        self._size = None if live else Path(self._name).stat().st_size
        self._start_pts = stream.start_time or 0
        self._queue: deque[object] = deque()  # frames, then _END or an exception
        self._changed = threading.Condition()
        self._progress = time.monotonic()  # when the reader thread last decoded a frame
        self._thread: threading.Thread | None = None
        self._closed = self._iterated = self._seeked = False
        self._next, self._sent = 0, 0  # the index of the next decoded frame; frames queued
        self._first: int | None = None  # the index of the first frame at or after ``start``

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[VideoFrame]:
        if self._iterated or self._closed:
            raise RuntimeError(f"{self._name}: a VideoReader is iterated once, before close()")
        self._iterated = True
        return self._take()

    def close(self) -> None:
        """Stop the reader thread and release the source; the iteration, if any, ends. Waits at
        most ``CLOSE_WAIT`` seconds: a thread blocked on a stalled stream ends, and closes the
        source, when PyAV's read timeout fires."""
        if self._thread is None and not self._closed:
            self._container.close()
        self._stop()

    def _stop(self) -> None:
        """Drop the queue, make the reader thread's next ``_put`` fail, and wait for it to end."""
        with self._changed:
            self._closed = True
            self._queue.clear()
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(CLOSE_WAIT)

    def _put(self, item: object) -> bool:
        """Queue ``item`` (waiting for room; a frame replaces one not taken with
        ``latest_only``); False, queueing nothing, once the reader is closed."""
        with self._changed:
            while self.latest_only and isinstance(item, VideoFrame) and self._queue:
                self.skipped.append(cast(VideoFrame, self._queue.pop()).index)
            while len(self._queue) >= QUEUE_FRAMES and not self._closed:
                self._changed.wait()
            if not self._closed:
                self._queue.append(item)
                self._changed.notify_all()
            return not self._closed

    def _take(self) -> Generator[VideoFrame, None, None]:
        """The consumer's side, which starts the reader thread on the first ``next()``: frames
        from the queue, and the reader thread's errors raised here."""
        if self._closed:
            return
        self._thread = threading.Thread(
            target=self._decode, name=f"VideoReader {self._name}", daemon=True
        )
        taken = 0
        try:
            self._thread.start()
            while self.max_frames is None or taken < self.max_frames:
                with self._changed:
                    began = time.monotonic()
                    while not self._queue and not self._closed:
                        left = max(began, self._progress) + self.timeout - time.monotonic()
                        if self.info.live and left <= 0:
                            raise self._stalled()
                        self._changed.wait(left if self.info.live else None)
                    if self._closed:
                        return
                    item = self._queue.popleft()
                    self._changed.notify_all()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield cast(VideoFrame, item)
                taken += 1
        finally:
            self._stop()

    def _stalled(self) -> VideoError:
        return VideoError(f"{self._name}: no frame for {self.timeout:g} s (stream stalled)")

    def _decode(self) -> None:
        """The reader thread: decode into the queue; the thread closes the container."""
        try:
            self._read()
        except Exception as err:  # raised in the consumer
            self._put(err)
        finally:
            self._container.close()

    def _read(self) -> None:
        """Demux and decode the source, queueing the frames ``start`` and ``stride`` select."""
        if not self.info.live:
            self._stream.codec_context.thread_type = "AUTO"
        self._seeked = self._seek()
        packets, end, waited, at_end = 0, 0, 0.0, False
        demux = self._container.demux(self._stream)
        while True:
            began = time.monotonic()
            try:
                packet = next(demux, None)
            except av.FFmpegError as err:
                raise self._failure(err, time.monotonic() - began) from None
            waited = time.monotonic() - began
            if packet is None:
                break
            if packet.size:
                packets, end = packets + 1, (packet.pos or 0) + packet.size
            at_end = self._size is not None and end >= self._size - TAIL_BYTES
            if packet.is_corrupt and at_end:
                # cut short by the end of the file: not decoded; the frames before it drained
                if self._emit(self._drain()):
                    raise VideoError(
                        f"{self._name}: corrupt at frame {self._next}: the file "
                        "ends inside a frame (truncated)"
                    )
                return
            try:
                frames = packet.decode()
            except av.FFmpegError as err:
                if self.info.live and waited < 0.9 * self.timeout:
                    continue  # a damaged packet of a stream: skipped, as players do
                raise self._failure(err, waited) from None  # no drain: it gives damaged frames
            if not self._emit(frames):
                return
        if self.info.live and waited >= 0.9 * self.timeout:  # PyAV's read timeout ended it
            raise self._stalled()
        count = self._stream.frames  # the header's; a file cut at a packet's end reads as shorter
        if not self._seeked and 0 < packets < count and at_end:
            raise VideoError(
                f"{self._name}: corrupt at frame {self._next}: the file ends early "
                f"(its header says {count} frames; truncated)"
            )
        if self._first is None:
            after = f" from {self.start:g} s on" if self._next or self._seeked else ""
            raise VideoError(f"{self._name}: has no frames{after}")
        self._put(_END)

    def _failure(self, err: Exception, waited: float) -> VideoError:
        """The error for ``err``, which FFmpeg raised on the frame after the last decoded one."""
        if self.info.live and (isinstance(err, av.error.ExitError) or waited >= 0.9 * self.timeout):
            return self._stalled()  # PyAV's read timeout interrupted FFmpeg: its only interrupt
        problem = "read failed" if self.info.live else "corrupt"
        return VideoError(f"{self._name}: {problem} at frame {self._next}: {ffmpeg_reason(err)}")

    def _seek(self) -> bool:
        """Seek a file to the keyframe at or before ``start``; False where decoding starts at the
        beginning instead (a live source, an unknown frame rate, a container that cannot seek)."""
        time_base = self._stream.time_base
        if self.start <= 0 or self.info.live or not self.info.fps or time_base is None:
            return False
        try:
            self._container.seek(self._start_pts + int(self.start / time_base), stream=self._stream)
        except av.FFmpegError:
            return False
        return True

    def _drain(self) -> list[av.VideoFrame]:
        """The frames the decoder still holds of the packets it was sent (B-frames wait there)."""
        try:
            return self._stream.decode(None)
        except av.FFmpegError:
            return []

    def _emit(self, frames: list[av.VideoFrame]) -> bool:
        """Place each frame in the source and queue those ``start`` and ``stride`` select; False
        once the reader wants no more (closed, or ``max_frames`` queued)."""
        fps, time_base = self.info.fps, self._stream.time_base
        limit = None if self.latest_only else self.max_frames  # latest_only: the consumer's count
        for frame in frames:
            self._progress, index = time.monotonic(), self._next
            if frame.pts is None or time_base is None:
                seconds = index / fps if fps else 0.0
            else:
                seconds = float((frame.pts - self._start_pts) * time_base)
                if self._seeked and self._first is None:  # after a seek, the index is the time's
                    index = round(seconds * fps)
            self._next = index + 1
            if self.start > 0 and seconds < self.start - 1e-3:
                continue
            if self._first is None:
                self._first = index
            if (index - self._first) % self.stride:
                continue
            image = np.ascontiguousarray(
                frame.to_ndarray(format="rgb24", interpolation=RGB_CONVERSION)
            )
            if not self._put(VideoFrame(index, seconds, image)):
                return False
            self._sent += 1
            if limit is not None and self._sent >= limit:
                return False
        return True
