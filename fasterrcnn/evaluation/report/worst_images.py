"""The images with the most errors, drawn so that each error shows at a glance.

Ground truth is drawn dashed and detections solid, each inside its box's edges:

- a ground-truth box that was found: dashed green, no tag (its detection carries one);
- a missed ground-truth box: dashed red, twice as thick, tagged ``missed <class>``;
- a true positive: solid green, tagged ``<class> <score>``;
- a false positive: solid orange, twice as thick, tagged ``<class> <score> <kind>``;
- an ignored region (crowd, VOC difficult) and a detection on it: dashed / solid grey.

The image is first scaled to fit ``MAX_SIDE`` pixels (never enlarged), so the lines and tags
keep their size in the page.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.images import ImageError, read_image
from fasterrcnn.evaluation.error_kinds import IGNORED, TRUE_POSITIVE, ImageErrors
from fasterrcnn.inference.drawing import (
    IGNORED_COLOR,
    box_pixels,
    dashed_rectangle,
    draw_tag,
    line_thickness,
    solid_rectangle,
)

MAX_SIDE = 1024
JPEG_QUALITY = 88
FOUND = (60, 180, 60)  # BGR green
MISSED = (50, 50, 230)  # BGR red
FALSE_POSITIVE = (0, 150, 255)  # BGR orange
KIND_TAGS = {
    "duplicate": "duplicate",
    "wrong_class": "wrong class",
    "poor_localization": "poorly localized",
    "background": "background",
}
LEGEND = (
    "Ground truth dashed, detections solid. Green: found ground truth and true positives; "
    "red: missed ground truth; orange: false positives, tagged with their kind; grey: "
    "ignored regions and the detections on them."
)


@dataclass(frozen=True)
class DrawnImage:
    """A worst image written to ``file`` (relative to the report folder)."""

    file: str
    caption: str


@dataclass
class WorstImages:
    """The images written and one line per image that could not be read."""

    drawn: list[DrawnImage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def draw_errors(
    image_rgb: np.ndarray,
    errors: ImageErrors,
    annotations: list[dict[str, Any]],
    names: Mapping[int, str],
) -> np.ndarray:
    """A BGR copy of ``image_rgb`` (scaled to fit MAX_SIDE) with ``annotations`` (the
    image's ground truth, in the order ``errors.missed`` indexes) and ``errors``'
    detections drawn in the module's styles."""
    height, width = image_rgb.shape[:2]
    scale = min(1.0, MAX_SIDE / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image_rgb = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
    canvas = np.ascontiguousarray(image_rgb[:, :, ::-1]).copy()
    height, width = canvas.shape[:2]
    thin = line_thickness(height, width)
    font_scale = max(0.4, 0.5 * max(height, width) / 1000)
    missed = set(errors.missed)

    def box_of(xywh: Any) -> tuple[int, int, int, int] | None:
        return box_pixels([float(v) * scale for v in xywh], height, width)

    tags: list[tuple[str, tuple[int, int], tuple[int, int, int]]] = []
    for i, annotation in enumerate(annotations):
        box = box_of(annotation["bbox"])
        if box is None:
            continue
        name = names.get(int(annotation["category_id"]), "?")
        if annotation.get("iscrowd", 0):
            dashed_rectangle(canvas, box, IGNORED_COLOR, thin)
        elif i in missed:
            dashed_rectangle(canvas, box, MISSED, 2 * thin)
            tags.append((f"missed {name}", box[:2], MISSED))
        else:
            dashed_rectangle(canvas, box, FOUND, thin)
    # Lowest scores first, so the most confident detections end up on top.
    for row, outcome in reversed(list(zip(errors.detections, errors.outcomes, strict=True))):
        box = box_of(row[1:5])
        if box is None:
            continue
        label = f"{names.get(int(row[6]), '?')} {row[5]:.2f}"
        if outcome == TRUE_POSITIVE:
            color, thickness = FOUND, thin
        elif outcome == IGNORED:
            color, thickness = IGNORED_COLOR, thin
        else:
            color, thickness, label = FALSE_POSITIVE, 2 * thin, f"{label} {KIND_TAGS[outcome]}"
        solid_rectangle(canvas, box, color, thickness)
        tags.append((label, box[:2], color))
    for text, corner, color in tags:  # tags last, so no outline crosses them
        draw_tag(canvas, text, corner, color, font_scale)
    return canvas


def caption(file_name: str, errors: ImageErrors) -> str:
    """``"name.jpg: 3 false positives, 2 missed"``."""
    fp, missed = errors.false_positives, len(errors.missed)
    return (f"{file_name}: {fp} false positive{'' if fp == 1 else 's'}, "
            f"{missed} missed")  # fmt: skip


def write_worst_images(
    dataset: CocoDataset,
    worst: list[ImageErrors],
    folder: Path,
    *,
    progress: bool = True,
    on_skip: Callable[[str], None] | None = None,
) -> WorstImages:
    """Draw the images of ``worst`` (in order) into ``folder / "worst"`` as
    ``NN_<stem>.jpg``, emptying the ``.jpg`` files an earlier report left there. An image
    that cannot be read is skipped: its one-line reason goes to ``on_skip`` and the result."""
    out = folder / "worst"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jpg"):
        old.unlink()
    names = dict(zip(dataset.classes.category_ids, dataset.classes.names, strict=True))
    written = WorstImages()
    bar = tqdm(worst, desc="report images", unit="image", file=sys.stderr, disable=not progress,
               leave=False)  # fmt: skip
    for rank, errors in enumerate(bar, start=1):
        index = dataset.index_of(errors.image_id)
        file_name = dataset.images[index].file_name
        try:
            pixels = read_image(dataset.image_path(index))
        except ImageError as err:
            written.skipped.append(f"report: skipped {err}")
            if on_skip is not None:
                on_skip(written.skipped[-1])
            continue
        drawn = draw_errors(pixels, errors, dataset.annotations(errors.image_id), names)
        relative = f"worst/{rank:02d}_{PurePosixPath(file_name).stem}.jpg"
        ok, encoded = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"{relative}: could not encode the image")
        (folder / relative).write_bytes(encoded.tobytes())
        written.drawn.append(DrawnImage(relative, caption(file_name, errors)))
    return written
