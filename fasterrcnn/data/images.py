"""Reading images (files or encoded bytes) into HxWx3 uint8 RGB arrays, with one-line errors
for bad ones."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """An image that cannot be read; the message names the file and the problem."""


class ImageTooLarge(ImageError):
    """An image of more pixels than the decoder was allowed to decode."""


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
    return decode_image(path.read_bytes(), str(path), channels=channels)


def decode_image(
    data: bytes, name: str = "image", *, channels: str = "RGB", max_pixels: int | None = None
) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ...) as :func:`read_image` decodes a file; ``name``
    starts the error messages.

    With ``max_pixels``, the size is read from the header first and an image of more pixels is
    refused before it is decoded (a small file can hold a huge image); so is a file whose
    header cannot be read.
    """
    if not data:
        raise ImageError(f"{name}: empty file")
    if data[:2] == b"\xff\xd8" and not _jpeg_complete(data):
        raise ImageError(f"{name}: truncated JPEG (no end-of-image marker)")
    if max_pixels is not None:
        _check_pixels(data, name, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{name}: not a readable image")
    return to_rgb(image, "BGR") if channels == "RGB" else image


def _check_pixels(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse an image of more than ``max_pixels`` pixels from its header alone (Pillow reads
    only the header on open)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
    except Image.DecompressionBombError as err:  # over Pillow's own limit, far above ours
        count = re.search(r"\((\d+) pixels\)", str(err))  # Pillow names the pixel count
        size = (
            f"{int(count.group(1)):,}" if count else f"over {2 * (Image.MAX_IMAGE_PIXELS or 0):,}"
        )
        raise ImageTooLarge(
            f"{name}: image too large ({size} pixels; the limit is {max_pixels:,})"
        ) from None
    except (OSError, ValueError, SyntaxError):
        raise ImageError(f"{name}: not a readable image") from None
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name}: image too large ({width} x {height} = {width * height:,} pixels; "
            f"the limit is {max_pixels:,})"
        )


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of the image file ``path`` as :func:`read_image` decodes it, from its
    header alone (no pixel is decoded): an EXIF orientation that turns the image by 90
    degrees swaps the two, as decoding does."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as header:
                width, height = header.size
                orientation = header.getexif().get(_EXIF_ORIENTATION, 1)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise ImageError(f"{path}: not a readable image") from None
    if orientation in (5, 6, 7, 8):  # transposed or turned by 90 or 270 degrees
        width, height = height, width
    return height, width


_EXIF_ORIENTATION = 0x0112


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
