"""What a source given to ``detect`` is: an image file, a video file or a stream URL.

Needs no video library: a name with an image or video suffix, or a URL, is known by its name;
another existing file is opened by FFmpeg (through PyAV, when installed) to tell a video from
an image by its content.
"""

from __future__ import annotations

import glob
import importlib.util
from pathlib import Path
from typing import Literal

from fasterrcnn.data.images import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://",
                  "srt://")  # fmt: skip
MISSING_PYAV = "videos need PyAV: pip install av (or fasterrcnn[video])"

SourceKind = Literal["image", "video", "stream"]


def is_stream_url(text: str) -> bool:
    """Whether ``text`` is the URL of a network stream (RTSP, RTMP, HTTP(S), UDP, TCP or SRT)."""
    return text.lower().startswith(STREAM_SCHEMES)


def has_pyav() -> bool:
    return importlib.util.find_spec("av") is not None


def source_kind(source: str | Path) -> SourceKind:
    """``"stream"`` for a URL, ``"video"`` for a file with a video suffix or, when PyAV is
    installed, one FFmpeg reads as a video; ``"image"`` otherwise (reading it then says what
    is wrong with it)."""
    if isinstance(source, str) and is_stream_url(source):
        return "stream"
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if path.is_file() and has_pyav():
        from fasterrcnn.data.video import is_video_file

        return "video" if is_video_file(path) else "image"
    return "image"


def list_sources(sources: list[str]) -> list[Path | str]:
    """Expand files, directories (their images and videos, sorted), glob patterns and URLs
    (kept as they are). A path that does not exist is kept, so that reading it reports it."""
    out: list[Path | str] = []
    for source in sources:
        path = Path(source)
        if is_stream_url(source):
            out.append(source)
        elif path.is_dir():
            known = IMAGE_SUFFIXES + VIDEO_SUFFIXES
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in known)
        elif any(ch in source for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(source, recursive=True))
            out += [p for p in matches if p.is_file()] or [path]
        else:
            out.append(path)
    return out
