"""What the readers of per-image label files (Pascal VOC XML, YOLO ``.txt``) share: the COCO
annotation a box becomes, clipped to its image, and the dataset they build together.

A box that sticks out of its image is clipped and counted as repaired; a box left without
area by clipping is dropped and counted. A label file that cannot be used at all is left out
with its image, counted, and named in the report's notes (the first few of each kind).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.data.load_report import LoadReport

CLIPPED = "boxes clipped to the image"
EMPTY_AFTER_CLIP = "boxes without area inside the image"
EXAMPLES = 3  # problems named per kind in the report's notes


@dataclass
class LabelledImage:
    """One image and its boxes as a reader found them: ``boxes`` (x1, y1, x2, y2) in
    continuous 0-based pixels with their category ids and crowd (ignore) flags."""

    file_name: str
    height: int
    width: int
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)
    crowd: list[bool] = field(default_factory=list)


class ReportBuilder:
    """A :class:`LoadReport` being filled, with a few named examples per problem."""

    def __init__(self, format: str) -> None:
        self.report = LoadReport(format)
        self._examples: dict[str, list[str]] = {}

    def repaired(self, reason: str, n: int = 1) -> None:
        self.report.repaired[reason] += n

    def dropped(self, reason: str, example: str | None = None, n: int = 1) -> None:
        self.report.dropped[reason] += n
        if example is not None:
            self._examples.setdefault(reason, []).append(example)

    def note(self, line: str) -> None:
        self.report.notes.append(line)

    def finish(self) -> LoadReport:
        for reason, examples in self._examples.items():
            shown = "; ".join(examples[:EXAMPLES])
            more = len(examples) - EXAMPLES
            self.report.notes.append(
                f"{reason}: {shown}" + (f" (and {more} more)" if more > 0 else "")
            )
        self._examples = {}
        return self.report


Box = tuple[float, float, float, float]


def clip_to_image(box: Box, height: int, width: int) -> Box | None:
    """``box`` (x1, y1, x2, y2) clipped to ``[0, width] x [0, height]``, or None when no area
    is left of it."""
    x1, y1, x2, y2 = box
    clipped = (
        min(max(x1, 0.0), float(width)),
        min(max(y1, 0.0), float(height)),
        min(max(x2, 0.0), float(width)),
        min(max(y2, 0.0), float(height)),
    )
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return None
    return clipped


def clipped_box(box: Box, height: int, width: int, report: ReportBuilder) -> Box | None:
    """:func:`clip_to_image`, counted: as repaired when clipping changed the box, as dropped
    when no area is left."""
    clipped = clip_to_image(box, height, width)
    if clipped is None:
        report.dropped(EMPTY_AFTER_CLIP)
    elif clipped != box:
        report.repaired(CLIPPED)
    return clipped


def build_dataset(
    images: list[LabelledImage],
    class_names: list[str],
    category_ids: list[int],
    image_root: Path | None,
    source: str,
    report: ReportBuilder,
) -> CocoDataset:
    """The in-memory COCO dataset of ``images`` (ids 1, 2, ... in the given order)."""
    if not images:
        raise DatasetError(f"{source}: no usable image")
    image_entries: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, image in enumerate(images, start=1):
        image_entries.append(
            {"id": image_id, "file_name": image.file_name, "height": image.height,
             "width": image.width}
        )  # fmt: skip
        for box, category_id, crowd in zip(
            image.boxes, image.category_ids, image.crowd, strict=True
        ):
            x1, y1, x2, y2 = box
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                 "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                 "iscrowd": int(crowd)}
            )  # fmt: skip
    categories = [
        {"id": i, "name": name} for i, name in zip(category_ids, class_names, strict=True)
    ]
    data = {"images": image_entries, "annotations": annotations, "categories": categories}
    return CocoDataset.load(data, image_root, source=source, report=report.finish())
