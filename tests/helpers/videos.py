"""Small test videos made from the COCO fixture images with PyAV, and an HTTP server on
127.0.0.1 that streams one: whole, or its first bytes and then nothing."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import cv2
import numpy as np

from fasterrcnn.data.video_reader import RGB_CONVERSION

IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "coco" / "val2017"


@cache
def _coco_frames(width: int, height: int) -> tuple[np.ndarray, ...]:
    frames = []
    for path in sorted(IMAGES.glob("*.jpg")):
        bgr = cv2.imread(str(path))
        assert bgr is not None, path
        image = bgr[..., ::-1]
        scale = max(width / image.shape[1], height / image.shape[0])
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, (max(size[0], width), max(size[1], height)))
        top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
        frames.append(np.ascontiguousarray(image[top : top + height, left : left + width]))
    return tuple(frames)


def coco_frames(width: int = 320, height: int = 240) -> list[np.ndarray]:
    """The 10 COCO fixture images as HxWx3 uint8 RGB frames of ``width`` x ``height``: each
    scaled to cover that size, then centre-cropped to it."""
    return list(_coco_frames(width, height))


def pan_frames(count: int = 20) -> list[np.ndarray]:
    """``count`` 320x240 RGB frames of a camera panning across a COCO image, 8 pixels right and
    6 down a frame: motion, as an encoder meets it in a video."""
    image = coco_frames(320 + 8 * count, 240 + 6 * count)[0]
    return [
        np.ascontiguousarray(image[6 * i : 6 * i + 240, 8 * i : 8 * i + 320]) for i in range(count)
    ]


def write_video(
    path: Path,
    frames: list[np.ndarray],
    codec: str = "ffv1",
    pix_fmt: str = "bgr0",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    fps: Fraction = Fraction(10),
) -> Path:
    """Encode ``frames`` into ``path`` with PyAV, the container chosen by the suffix; with no
    frames, a container that has a video stream and no packet."""
    height, width = frames[0].shape[:2] if frames else (48, 64)
    with av.open(str(path), "w", container_options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        container.start_encoding()
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame of ``path`` as RGB, decoded by PyAV alone with the reader's conversion (the
    reference for the reader)."""
    with av.open(str(path)) as container:
        frames = container.decode(video=0)
        return [frame.to_ndarray(format="rgb24", interpolation=RGB_CONVERSION) for frame in frames]


@contextmanager
def serve_video(data: bytes, hang_after: int | None = None) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 for ``data`` (an MP4), yielding its URL; with ``hang_after``
    it sends the headers and that many bytes, then nothing until the server stops."""
    stopping = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:hang_after])
            self.wfile.flush()
            if hang_after is not None:
                stopping.wait()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/video.mp4"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
