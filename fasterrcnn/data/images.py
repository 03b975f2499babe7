"""Reading images from disk into HxWx3 uint8 RGB arrays, with one-line errors for bad files."""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """An image that cannot be read; the message names the file and the problem."""


def read_image(path: str | Path, channels: str = "RGB") -> np.ndarray:
    """Decode ``path`` into an HxWx3 uint8 array in ``channels`` order ("RGB" or "BGR").

    Grayscale images are replicated to 3 channels, an alpha channel is dropped and 16-bit
    images are scaled to 8 bits (OpenCV's colour conversion, as ``cv2.imread`` does). EXIF
    orientation is applied.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    data = path.read_bytes()
    if not data:
        raise ImageError(f"{path}: empty file")
    if data[:2] == b"\xff\xd8" and not _jpeg_complete(data):
        raise ImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{path}: not a readable image")
    return to_rgb(image, "BGR") if channels == "RGB" else image


def to_rgb(image: np.ndarray, channels: str) -> np.ndarray:
    """Check an HxWx3 uint8 array in ``channels`` order and return it as RGB."""
    if channels not in ("RGB", "BGR"):
        raise ValueError(f"channels must be 'RGB' or 'BGR', not {channels!r}")
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ImageError(f"expected an HxWx3 uint8 array, got shape {shape}")
    if image.dtype != np.uint8:
        raise ImageError(f"expected an HxWx3 uint8 array, got dtype {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"empty image of shape {image.shape}")
    return np.ascontiguousarray(image[:, :, ::-1]) if channels == "BGR" else image


def _jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG's entropy-coded data reaches an end-of-image (FFD9) marker.

    Header segments are skipped by their lengths (an embedded EXIF thumbnail's FFD9 does not
    count); after the first start-of-scan, FFD9 can only be the real end of the image.
    """
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # start of scan: the rest is image data
            return data.find(b"\xff\xd9", pos + 2 + length) != -1
        pos += 2 + length
    return False


def list_images(sources: list[str]) -> list[Path]:
    """Expand files, directories (their images, sorted) and glob patterns into paths.

    A path that does not exist is kept as it is, so that reading it reports the problem.
    """
    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif any(ch in source for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(source, recursive=True))
            paths += [p for p in matches if p.is_file()]
            if not matches:
                paths.append(path)
        else:
            paths.append(path)
    return paths
