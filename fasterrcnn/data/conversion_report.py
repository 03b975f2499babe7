"""What every dataset writer shares: the :class:`ConversionReport` it returns, image sizes
(read from the image headers where the dataset has none), output file stems and class-name
checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.images import ImageError, image_size
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.data.label_files import Box, clip_to_image


@dataclass
class ConversionReport:
    """What a writer wrote to ``output`` (images, boxes, classes), what it changed to fit the
    format (``repaired``, reason -> boxes) and what the format cannot hold (``dropped``,
    reason -> boxes)."""

    format: str
    output: Path
    images: int = 0
    boxes: int = 0
    classes: int = 0
    repaired: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        """A summary line, then one line per repair and per reason for dropping."""
        lines = [
            f"wrote {self.images} image(s), {self.boxes} box(es) and {self.classes} class(es) "
            f"as {self.format} to {self.output}"
        ]
        lines += [f"repaired: {n} {reason}" for reason, n in sorted(self.repaired.items())]
        return lines + [f"dropped: {n} {reason}" for reason, n in sorted(self.dropped.items())]


def image_sizes(dataset: CocoDataset) -> list[tuple[int, int]]:
    """(height, width) of every image of ``dataset``, in order: the dataset's own, or the
    image file's header where the dataset has none."""
    sizes = []
    for i, image in enumerate(dataset.images):
        if image.height is not None and image.width is not None:
            sizes.append((image.height, image.width))
            continue
        if dataset.image_root is None:
            raise DatasetError(
                f"{dataset.source}: image {image.id} ({image.file_name}) has no width and "
                "height, and no image folder was given to read them from"
            )
        try:
            sizes.append(image_size(dataset.image_path(i)))
        except ImageError as err:
            raise DatasetError(
                f"{err} (image {image.id} of {dataset.source} has no width and height)"
            ) from None
    return sizes


def unique_stems(file_names: Iterable[str]) -> list[str]:
    """One output stem per image file name: its stem, numbered when it repeats."""
    used: set[str] = set()
    stems = []
    for file_name in file_names:
        stem = PurePosixPath(file_name).stem or "image"
        candidate, n = stem, 1
        while candidate in used:
            candidate, n = f"{stem}_{n}", n + 1
        used.add(candidate)
        stems.append(candidate)
    return stems


def check_class_names(dataset: CocoDataset, fmt: str) -> None:
    """Refuse class names a format that names classes cannot tell apart or write: names
    used twice, empty ones and ones with a line break."""
    seen: dict[str, int] = {}
    for category_id, name in zip(dataset.classes.category_ids, dataset.classes.names, strict=True):
        if not name.strip() or "\n" in name or "\r" in name:
            raise DatasetError(
                f"{dataset.source}: category {category_id} has the name {name!r}, "
                f"which {fmt} cannot hold"
            )
        if name in seen:
            raise DatasetError(
                f"{dataset.source}: categories {seen[name]} and {category_id} are both named "
                f"{name!r}, and {fmt} tells classes apart by name"
            )
        seen[name] = category_id


def xyxy(bbox: list[float]) -> Box:
    """A COCO ``[x, y, w, h]`` box as ``(x1, y1, x2, y2)``."""
    x, y, w, h = (float(v) for v in bbox)
    return x, y, x + w, y + h


def clip_box(box: Box, height: int, width: int, report: ConversionReport) -> Box | None:
    """:func:`~fasterrcnn.data.label_files.clip_to_image`, counted in ``report``: as a repair
    when clipping changed the box, as dropped when nothing of positive width and height is
    left of it."""
    clipped = clip_to_image(box, height, width)
    if clipped is None:
        report.dropped["boxes of no area inside the image"] += 1
    elif clipped != box:
        report.repaired["boxes clipped to the image"] += 1
    return clipped
