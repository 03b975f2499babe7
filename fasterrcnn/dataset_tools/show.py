"""The ground truth drawn onto the images, to check a dataset by eye.

:func:`show_dataset` writes every image with its boxes and class names (``<stem>.jpg``) and
contact sheets of thumbnails (``sheet_001.png``, ...) with the file name under each. A box is
drawn inside its edges, in its class's colour (as detections are drawn); an ignored region
(COCO crowd, VOC difficult) is a dashed grey outline labelled ``name (ignored)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.images import ImageError, read_image
from fasterrcnn.inference.drawing import class_color

IGNORED_COLOR = (160, 160, 160)  # BGR
DASH, GAP = 6, 4  # pixels of an ignored region's dashed outline
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


def line_thickness(height: int, width: int) -> int:
    """Outline thickness for an image of this size: 1 pixel per 400 of its longer side."""
    return max(1, round(max(height, width) / 400))


def draw_ground_truth(
    image_rgb: np.ndarray, annotations: list[dict[str, Any]], names: Mapping[int, str]
) -> np.ndarray:
    """A BGR copy of ``image_rgb`` with each annotation's box and class name drawn (ignored
    regions first, dashed and grey, so the boxes stay on top). ``names``: category id ->
    class name."""
    canvas = np.ascontiguousarray(image_rgb[:, :, ::-1]).copy()
    height, width = canvas.shape[:2]
    thickness = line_thickness(height, width)
    font_scale = max(0.4, 0.5 * max(height, width) / 1000)
    ordered = sorted(annotations, key=lambda a: -int(a.get("iscrowd", 0)))
    for annotation in ordered:
        x, y, w, h = (float(v) for v in annotation["bbox"])
        x1, y1 = max(math.floor(x), 0), max(math.floor(y), 0)
        x2 = min(max(math.ceil(x + w) - 1, x1), width - 1)
        y2 = min(max(math.ceil(y + h) - 1, y1), height - 1)
        if x1 >= width or y1 >= height:
            continue  # wholly outside the image
        category_id = int(annotation["category_id"])
        name = names.get(category_id, str(category_id))
        if annotation.get("iscrowd", 0):
            color, label = IGNORED_COLOR, f"{name} (ignored)"
            _dashed_rectangle(canvas, (x1, y1, x2, y2), color, thickness)
        else:
            color, label = class_color(category_id), name
            for k in range(thickness):  # inside the box's edges: it covers nothing around it
                cv2.rectangle(canvas, (x1 + k, y1 + k), (x2 - k, y2 - k), color, 1)
        _label(canvas, label, (x1, y1), color, font_scale)
    return canvas


def _dashed_rectangle(
    canvas: np.ndarray, box: tuple[int, int, int, int], color: tuple[int, int, int], thickness: int
) -> None:
    x1, y1, x2, y2 = box
    for k in range(thickness):
        left, top, right, bottom = x1 + k, y1 + k, x2 - k, y2 - k
        for start in range(left, right + 1, DASH + GAP):
            end = min(start + DASH - 1, right)
            cv2.line(canvas, (start, top), (end, top), color, 1)
            cv2.line(canvas, (start, bottom), (end, bottom), color, 1)
        for start in range(top, bottom + 1, DASH + GAP):
            end = min(start + DASH - 1, bottom)
            cv2.line(canvas, (left, start), (left, end), color, 1)
            cv2.line(canvas, (right, start), (right, end), color, 1)


def _label(
    canvas: np.ndarray,
    text: str,
    corner: tuple[int, int],
    color: tuple[int, int, int],
    font_scale: float,
) -> None:
    """``text`` on a filled ``color`` tag above the box's top-left corner (inside the box's
    top when there is no room above it)."""
    x1, y1 = corner
    (tw, th), base = cv2.getTextSize(text, FONT, font_scale, 1)
    tag = th + base + 2
    top = y1 - tag if y1 >= tag else y1
    cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + tag - 1), color, -1)
    cv2.putText(canvas, text, (x1 + 1, top + th + 1), FONT, font_scale, (0, 0, 0), 1, cv2.LINE_AA)


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
