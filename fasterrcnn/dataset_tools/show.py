"""The ground truth drawn onto the images, to check a dataset by eye.

:func:`show_dataset` writes every image with its boxes and class names (``<stem>.jpg``) and
contact sheets of thumbnails (``sheet_001.png``, ...) with the file name under each. A box is
drawn inside its edges, in its class's colour (as detections are drawn); an ignored region
(COCO crowd, VOC difficult) is a dashed grey outline labelled ``name (ignored)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.images import ImageError, read_image
from fasterrcnn.inference.drawing import draw_ground_truth

FONT = cv2.FONT_HERSHEY_SIMPLEX
# A contact sheet's cell: a thumbnail (thumb_size square), the file name under it (CAPTION
# pixels high) and PAD pixels around both.
CAPTION = 20
PAD = 4
SHEET_BACKGROUND = (40, 40, 40)
JPEG_QUALITY = 90


@dataclass
class ShowSummary:
    """What :func:`show_dataset` did: images drawn, one line per image skipped, sheets."""

    drawn: int = 0
    skipped: list[str] = field(default_factory=list)
    sheets: list[Path] = field(default_factory=list)


def sheet_grid(count: int, per_sheet: int) -> tuple[int, int]:
    """(rows, columns) of a sheet of ``count`` thumbnails: ceil(sqrt(per_sheet)) columns and
    the rows they need."""
    columns = math.ceil(math.sqrt(per_sheet))
    return math.ceil(count / columns), columns


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` scaled to fit a ``size`` square, centred on the sheet's background."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    square = np.full((size, size, 3), SHEET_BACKGROUND, np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    square[top : top + new_h, left : left + new_w] = small
    return square


def contact_sheet(
    thumbs: list[tuple[np.ndarray, str]], per_sheet: int, thumb_size: int
) -> np.ndarray:
    """The BGR sheet of ``thumbs`` (square thumbnails of ``thumb_size``, and captions) laid
    out by :func:`sheet_grid`, each caption under its thumbnail."""
    rows, columns = sheet_grid(len(thumbs), per_sheet)
    cell_w, cell_h = thumb_size + 2 * PAD, thumb_size + CAPTION + 2 * PAD
    sheet = np.full((rows * cell_h, columns * cell_w, 3), SHEET_BACKGROUND, np.uint8)
    for i, (thumb, caption) in enumerate(thumbs):
        top, left = (i // columns) * cell_h + PAD, (i % columns) * cell_w + PAD
        sheet[top : top + thumb_size, left : left + thumb_size] = thumb
        text = _fit(caption, thumb_size, 0.4)
        cv2.putText(sheet, text, (left, top + thumb_size + CAPTION - 6), FONT, 0.4,
                    (235, 235, 235), 1, cv2.LINE_AA)  # fmt: skip
    return sheet


def _fit(text: str, width: int, font_scale: float) -> str:
    """``text``, its start cut to "..." until it fits ``width`` pixels."""
    shown = text
    while len(shown) > 1 and cv2.getTextSize(shown, FONT, font_scale, 1)[0][0] > width:
        text = text[1:]
        shown = "..." + text
    return shown


def _write(path: Path, image: np.ndarray) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix == ".jpg" else []
    ok, encoded = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise OSError(f"{path}: could not encode the image")
    path.write_bytes(encoded.tobytes())


def show_dataset(
    dataset: CocoDataset,
    out: str | Path,
    *,
    max_images: int | None = None,
    per_sheet: int = 16,
    thumb_size: int = 256,
    on_skip: Callable[[str], None] | None = None,
) -> ShowSummary:
    """Draw the ground truth of the first ``max_images`` images (all by default) into the
    folder ``out`` (made if need be): ``<stem>.jpg`` per image (``<stem>_<id>.jpg`` when an
    earlier image had the same stem) and sheets of ``per_sheet`` thumbnails.

    An image that cannot be read is skipped: its one-line reason goes to ``on_skip`` and into
    the summary. A file that cannot be written raises OSError.
    """
    if per_sheet < 1 or thumb_size < 16:
        raise ValueError(f"per_sheet must be at least 1 and thumb_size 16 ({per_sheet}, "
                         f"{thumb_size} given)")  # fmt: skip
    if dataset.image_root is None:
        raise ValueError(f"{dataset.source}: the dataset has no image folder")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    names = dict(zip(dataset.classes.category_ids, dataset.classes.names, strict=True))
    summary = ShowSummary()
    stems: set[str] = set()
    thumbs: list[tuple[np.ndarray, str]] = []
    for i, image in enumerate(dataset.images[:max_images]):
        try:
            pixels = read_image(dataset.image_path(i))
        except ImageError as err:
            summary.skipped.append(f"skipped {err}")
            if on_skip is not None:
                on_skip(summary.skipped[-1])
            continue
        drawn = draw_ground_truth(pixels, dataset.annotations(image.id), names)
        stem = PurePosixPath(image.file_name).stem
        stem = f"{stem}_{image.id}" if stem in stems else stem
        stems.add(stem)
        _write(folder / f"{stem}.jpg", drawn)
        summary.drawn += 1
        thumbs.append((thumbnail(drawn, thumb_size), image.file_name))
        if len(thumbs) == per_sheet:
            summary.sheets.append(_write_sheet(folder, summary, thumbs, per_sheet, thumb_size))
            thumbs = []
    if thumbs:
        summary.sheets.append(_write_sheet(folder, summary, thumbs, per_sheet, thumb_size))
    return summary


def _write_sheet(
    folder: Path,
    summary: ShowSummary,
    thumbs: list[tuple[np.ndarray, str]],
    per_sheet: int,
    thumb_size: int,
) -> Path:
    path = folder / f"sheet_{len(summary.sheets) + 1:03d}.png"
    _write(path, contact_sheet(thumbs, per_sheet, thumb_size))
    return path
