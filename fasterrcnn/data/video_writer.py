"""The drawn output video: RGB frames encoded in order as H.264 (libx264) where PyAV's FFmpeg
has that encoder, else as MPEG-4 Part 2, into a file that plays once the writer is closed,
however early the producer stopped."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from fasterrcnn.data.video import VideoError, ffmpeg_reason

DEFAULT_FPS = 25  # the rate of a source that does not give one
# 9 ms to encode a 1280x720 frame on 2 busy cores (ultrafast 6.5, veryfast 12.6), files up to
# a third smaller than ultrafast's
X264_PRESET = "superfast"
X264_CRF = "23"  # libx264's default quality
MPEG4_BITS_PER_PIXEL = 0.2  # MPEG-4's bit rate per pixel and frame: 39-40 dB PSNR at 1280x720
CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


def video_encoder() -> Literal["libx264", "mpeg4"]:
    """The encoder: libx264 where PyAV's FFmpeg has it, else mpeg4 (which every FFmpeg has)."""
    try:
        av.Codec("libx264", "w")
    except ValueError:  # PyAV's UnknownCodecError
        return "mpeg4"
    return "libx264"


def exact_rate(fps: float | Fraction) -> Fraction:
    """``fps`` as an exact frame rate: a Fraction as it is (PyAV's ``average_rate``), a number
    as the nearest fraction of denominator 1001 or less, and ``DEFAULT_FPS`` where ``fps`` is
    zero, negative or not finite (a source of unknown rate)."""
    if not isinstance(fps, Fraction):
        value = float(fps)
        fps = Fraction(value).limit_denominator(1001) if math.isfinite(value) else Fraction(0)
    return fps if fps > 0 else Fraction(DEFAULT_FPS)


class VideoWriter:
    """HxWx3 uint8 RGB frames of ``width`` x ``height`` written in order into ``path``, an MP4
    (or MOV, MKV, AVI, by the suffix) at ``fps``; a context manager that closes on any exit.

    The codec (``codec``) is libx264 at ``X264_PRESET`` or, without it, mpeg4, both yuv420p.
    As yuv420p needs an even width and height, a frame of odd ones is padded by repeating its
    last column or row: the file is then ``encoded_size`` (one pixel wider or taller). An MP4
    or MOV is written with its index at the front (``+faststart``), so it plays while it
    downloads; that index is written by ``close()``, which a file needs to play at all.
    """

    def __init__(self, path: str | Path, fps: float | Fraction, width: int, height: int) -> None:
        self.path = Path(path)
        container_format = CONTAINERS.get(self.path.suffix.lower())
        if container_format is None:
            raise VideoError(
                f"{self.path}: cannot write {self.path.suffix or 'a suffixless'} "
                f"video; name it .mp4, .mov, .mkv or .avi"
            )
        if width < 1 or height < 1:
            raise ValueError(f"{self.path}: frames of {width}x{height} pixels")
        self.rate, self.width, self.height = exact_rate(fps), width, height
        self.encoded_size = (width + width % 2, height + height % 2)
        self.codec, self.frames, self._closed = video_encoder(), 0, False
        faststart = {"movflags": "+faststart"} if container_format in ("mp4", "mov") else {}
        try:
            self._container = av.open(
                str(self.path), "w", format=container_format, container_options=faststart
            )
        except (av.FFmpegError, OSError) as err:
            raise VideoError(f"{self.path}: cannot write: {ffmpeg_reason(err)}") from None
        try:
            self._stream = self._container.add_stream(self.codec, rate=self.rate)
            self._stream.width, self._stream.height = self.encoded_size
            self._stream.pix_fmt = "yuv420p"
            if self.codec == "libx264":
                self._stream.options = {"preset": X264_PRESET, "crf": X264_CRF}
            else:
                pixels = self.encoded_size[0] * self.encoded_size[1]
                self._stream.bit_rate = int(pixels * float(self.rate) * MPEG4_BITS_PER_PIXEL)
            self._container.start_encoding()
        except (av.FFmpegError, OSError) as err:
            self._container.close()
            raise VideoError(f"{self.path}: cannot write: {ffmpeg_reason(err)}") from None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write(self, rgb: np.ndarray) -> None:
        """Encode ``rgb`` (HxWx3 uint8 RGB of the writer's size) as the next frame."""
        if self._closed:
            raise VideoError(f"{self.path}: written to after close()")
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: a frame must be {self.height}x{self.width}x3 uint8 "
                f"RGB, not {'x'.join(map(str, rgb.shape))} {rgb.dtype}"
            )
        pad = ((0, self.encoded_size[1] - self.height), (0, self.encoded_size[0] - self.width))
        if pad[0][1] or pad[1][1]:
            rgb = np.pad(rgb, (*pad, (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames  # in 1 / rate, the codec's time base
        try:
            self._container.mux(self._stream.encode(frame))
        except (av.FFmpegError, OSError) as err:
            raise VideoError(
                f"{self.path}: cannot write frame {self.frames}: {ffmpeg_reason(err)}"
            ) from None
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder's buffered frames and write the container's trailer (its index),
        so the file plays with every frame written; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.mux(self._stream.encode(None))
        except (av.FFmpegError, OSError) as err:
            raise VideoError(f"{self.path}: cannot finish: {ffmpeg_reason(err)}") from None
        finally:
            self._container.close()
