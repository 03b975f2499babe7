"""Videos read and written with PyAV. This module holds what a video source is: files FFmpeg
reads as videos (not images), stream URLs and cameras, opened with one-line errors, and the
frames and facts a reader gives of them; ``VideoReader`` (``video_reader``) and ``VideoWriter``
(``video_writer``) are importable from here too."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from av.container import InputContainer
from av.stream import Disposition
from av.video.stream import VideoStream

from fasterrcnn.data.sources import VIDEO_SUFFIXES, is_stream_url

if TYPE_CHECKING:  # imported on first use by __getattr__: their modules import this one
    from fasterrcnn.data.video_reader import VideoReader
    from fasterrcnn.data.video_writer import VideoWriter

__all__ = ["VIDEO_SUFFIXES", "VideoError", "VideoFrame", "VideoInfo", "VideoReader",
           "VideoWriter", "is_stream_url", "is_video_file"]  # fmt: skip

# The first bytes of JPEG, PNG, BMP and TIFF files (WebP: RIFF....WEBP): FFmpeg, which reads
# them as one-frame videos, decodes them to open them (5 ms a PNG, 10 ms a WebP).
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*")


class VideoError(ValueError):
    """A video source that cannot be read; the one-line message names the source and the problem."""


@dataclass(frozen=True)
class VideoFrame:
    index: int  # position in the source, counting every decoded frame from 0 (before any stride)
    time: float  # seconds from the start of the stream
    image: np.ndarray  # HxWx3 uint8 RGB, C-contiguous


@dataclass(frozen=True)
class VideoInfo:
    source: str  # the file, the URL or "camera N"
    width: int
    height: int
    fps: float  # the average frame rate (else FFmpeg's guess); 0.0 if unknown
    frames: int | None  # the frame count in the container's header, where it has one
    live: bool  # a stream URL or a camera
    rate: Fraction | None = None  # ``fps`` exactly, for a writer of the same rate


def is_video_file(path: str | Path) -> bool:
    """Whether FFmpeg reads the file ``path`` as a video, judged by its content, not its name.

    Images, which FFmpeg reads as one-frame videos of its image formats ("image2", "png_pipe",
    ...), are not videos, nor is an audio file whose only picture is its cover art. The common
    image files are told by their first bytes; FFmpeg opens the others (a millisecond or two
    for a video).
    """
    path = Path(path)
    try:
        if not path.is_file() or starts_as_image(path):
            return False
        with av.open(str(path), metadata_errors="replace") as container:
            return first_video_stream(container) is not None and not is_image_container(container)
    except (av.FFmpegError, OSError):
        return False


def starts_as_image(path: Path) -> bool:
    """Whether the file ``path`` is empty or starts as a JPEG, PNG, BMP, TIFF or WebP file."""
    with path.open("rb") as file:
        head = file.read(16)
    return not head or head.startswith(IMAGE_SIGNATURES) or head[8:12] == b"WEBP"


def is_image_container(container: InputContainer) -> bool:
    """Whether FFmpeg opened ``container`` with one of its single-image formats."""
    names = container.format.name.split(",")
    return any(name.startswith("image2") or name.endswith("_pipe") for name in names)


def first_video_stream(container: InputContainer) -> VideoStream | None:
    """The first video stream of ``container`` that is not an attached picture (cover art)."""
    streams = container.streams.video
    return next((s for s in streams if not s.disposition & Disposition.attached_pic), None)


def ffmpeg_reason(err: Exception) -> str:
    """FFmpeg's words for ``err``, without the file name PyAV appends."""
    return getattr(err, "strerror", None) or str(err)


def open_source(source: str | Path | int, timeout: float) -> tuple[str, InputContainer]:
    """Open ``source`` (a file, a stream URL or a camera index): its name and its container.

    A stream or camera may take ``timeout`` seconds to connect, then as long again for FFmpeg
    to probe its first packets, before a stall is an error."""
    name, target = str(source), str(source)
    options: dict[str, Any] = {"metadata_errors": "replace"}
    if isinstance(source, int):
        name, target, options["format"] = f"camera {source}", f"/dev/video{source}", "v4l2"
        if source < 0 or not Path(target).exists():
            raise VideoError(f"{name}: no such device")
    if isinstance(source, int) or (isinstance(source, str) and is_stream_url(source)):
        options["timeout"] = timeout  # PyAV's limit for opening, and for each read after
    elif not Path(source).exists():
        raise VideoError(f"{name}: no such file")
    elif Path(source).is_dir():
        raise VideoError(f"{name}: is a directory, not a video")
    elif Path(source).stat().st_size == 0:
        raise VideoError(f"{name}: empty file")
    elif starts_as_image(Path(source)):
        raise VideoError(f"{name}: is an image, not a video")
    try:
        container = av.open(target, **options)
    except av.error.EOFError:  # the container ends before its first packet
        raise VideoError(f"{name}: has no frames") from None
    except av.error.ExitError:  # PyAV's timeout, its only interrupt, ended the connection or probe
        raise VideoError(f"{name}: no frame for {timeout:g} s (stream stalled)") from None
    except av.error.InvalidDataError:
        if Path(target).suffix.lower() in VIDEO_SUFFIXES:
            raise VideoError(f"{name}: unreadable video (truncated or damaged?)") from None
        raise VideoError(f"{name}: is not a video or image") from None
    except (av.FFmpegError, OSError) as err:
        raise VideoError(f"{name}: cannot open: {ffmpeg_reason(err)}") from None
    if is_image_container(container):
        container.close()
        raise VideoError(f"{name}: is an image, not a video")
    return name, container


def __getattr__(name: str) -> Any:
    """``VideoReader`` and ``VideoWriter``, from their modules (which import this one)."""
    if name == "VideoReader":
        from fasterrcnn.data.video_reader import VideoReader

        return VideoReader
    if name == "VideoWriter":
        from fasterrcnn.data.video_writer import VideoWriter

        return VideoWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
