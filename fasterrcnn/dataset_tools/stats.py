"""What a dataset holds, counted: images, boxes per class, box and image sizes, and what its
reader repaired or dropped.

:func:`dataset_stats` works on the in-memory :class:`~fasterrcnn.data.coco.CocoDataset` any
format is read into, so the counts mean the same for a COCO file, a VOC folder and a YOLO
``data.yaml``. Ignored regions (COCO crowd annotations, VOC ``difficult`` objects) are counted
apart from the boxes and left out of the size counts. :meth:`DatasetStats.table` is the text
``fasterrcnn data stats`` prints; :meth:`DatasetStats.to_dict` its JSON form.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.images import ImageError, image_size

# COCO's size classes, by box area (width * height, in pixels).
SMALL_AREA = 32**2
MEDIUM_AREA = 96**2
SIZE_CLASSES = ("small", "medium", "large")
# Widths of the sqrt(area) histogram's bins to choose from: the smallest that needs at most
# MAX_BINS bins. The first three put a bin edge on both COCO thresholds, 32 and 96.
BIN_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 1024)
MAX_BINS = 48


@dataclass(frozen=True)
class ClassCount:
    """Boxes and ignored regions of one class."""

    category_id: int
    name: str
    boxes: int
    ignored: int


@dataclass(frozen=True)
class ImageSizes:
    """``counts``: (width, height) -> images of that size. ``from_headers``: sizes the dataset
    did not give, read from the image files; ``unreadable``: images of unknown size."""

    counts: dict[tuple[int, int], int]
    from_headers: int
    unreadable: int

    def summary(self) -> dict[str, dict[str, float]]:
        """``{"width"|"height": {"min", "median", "max"}}``; empty when no size is known."""
        if not self.counts:
            return {}
        widths = [w for (w, _), n in self.counts.items() for _ in range(n)]
        heights = [h for (_, h), n in self.counts.items() for _ in range(n)]
        return {
            name: {"min": min(values), "median": statistics.median(values), "max": max(values)}
            for name, values in (("width", widths), ("height", heights))
        }


@dataclass(frozen=True)
class DatasetStats:
    """The counts of :func:`dataset_stats`. Boxes exclude ignored regions throughout."""

    source: str
    format: str
    images: int
    classes: tuple[ClassCount, ...]
    images_without_boxes: int
    """Images with no box (ignored regions aside), of which..."""
    images_only_ignored: int
    """...have ignored regions only, and..."""
    background_images: int
    """...had no label file (YOLO background images: the load report's ``unlabelled_images``)."""
    size_classes: dict[str, int]
    """Boxes per COCO size class: small (area < 32²), medium (< 96²), large."""
    size_edges: tuple[float, ...]
    """Bin edges of the histogram of sqrt(box area), in pixels..."""
    size_counts: tuple[int, ...]
    """...and the boxes in each bin."""
    image_sizes: ImageSizes
    repaired: dict[str, int]
    dropped: dict[str, int]
    notes: tuple[str, ...]

    @property
    def boxes(self) -> int:
        return sum(c.boxes for c in self.classes)

    @property
    def ignored(self) -> int:
        return sum(c.ignored for c in self.classes)

    @property
    def images_with_boxes(self) -> int:
        return self.images - self.images_without_boxes

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready lists and dicts."""
        sizes = self.image_sizes
        return {
            "source": self.source,
            "format": self.format,
            "images": self.images,
            "images_with_boxes": self.images_with_boxes,
            "images_without_boxes": self.images_without_boxes,
            "images_only_ignored": self.images_only_ignored,
            "background_images": self.background_images,
            "boxes": self.boxes,
            "ignored": self.ignored,
            "classes": [asdict(c) for c in self.classes],
            "size_classes": dict(self.size_classes),
            "size_histogram": {"edges": list(self.size_edges), "counts": list(self.size_counts)},
            "image_sizes": {
                "sizes": [
                    {"width": w, "height": h, "images": n}
                    for (w, h), n in sorted(sizes.counts.items(), key=_by_count)
                ],
                **sizes.summary(),
                "from_headers": sizes.from_headers,
                "unreadable": sizes.unreadable,
            },
            "repaired": dict(self.repaired),
            "dropped": dict(self.dropped),
            "notes": list(self.notes),
        }

    def table(self) -> str:
        """A text table for the terminal (see :mod:`~fasterrcnn.dataset_tools.stats_table`)."""
        from fasterrcnn.dataset_tools.stats_table import stats_table

        return stats_table(self)


def _by_count(item: tuple[tuple[int, int], int]) -> tuple[int, int, int]:
    (width, height), count = item
    return -count, width, height


def dataset_stats(dataset: CocoDataset, *, read_sizes: bool = True) -> DatasetStats:
    """Count what ``dataset`` holds (see :class:`DatasetStats`).

    Images the dataset gives no size for are measured from their file headers (no pixel is
    decoded); one that cannot be read, or any with ``read_sizes=False``, counts as unreadable.
    """
    boxes: Counter[int] = Counter()
    ignored: Counter[int] = Counter()
    without_boxes = only_ignored = 0
    roots: list[float] = []
    for image in dataset.images:
        found = regions = 0
        for annotation in dataset.annotations(image.id):
            if annotation.get("iscrowd", 0):
                ignored[annotation["category_id"]] += 1
                regions += 1
                continue
            boxes[annotation["category_id"]] += 1
            found += 1
            _, _, w, h = annotation["bbox"]
            roots.append(math.sqrt(max(float(w), 0.0) * max(float(h), 0.0)))
        if not found:
            without_boxes += 1
            only_ignored += regions > 0
    classes = tuple(
        ClassCount(category_id, name, boxes[category_id], ignored[category_id])
        for category_id, name in zip(
            dataset.classes.category_ids, dataset.classes.names, strict=True
        )
    )
    edges, counts = _histogram(roots)
    report = dataset.report
    return DatasetStats(
        source=dataset.source,
        format=report.format,
        images=len(dataset.images),
        classes=classes,
        images_without_boxes=without_boxes,
        images_only_ignored=only_ignored,
        background_images=report.unlabelled_images,
        size_classes=_size_classes(roots),
        size_edges=edges,
        size_counts=counts,
        image_sizes=_image_sizes(dataset, read_sizes),
        repaired=dict(sorted(report.repaired.items())),
        dropped=dict(sorted(report.dropped.items())),
        notes=tuple(report.notes),
    )


def _size_classes(roots: list[float]) -> dict[str, int]:
    counts = dict.fromkeys(SIZE_CLASSES, 0)
    for root in roots:
        area = root * root
        counts["small" if area < SMALL_AREA else "medium" if area < MEDIUM_AREA else "large"] += 1
    return counts


def _histogram(roots: list[float]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Bins from 0 past the largest sqrt(area), of the narrowest width of BIN_WIDTHS that
    needs at most MAX_BINS of them (the widest if none does)."""
    top = max(roots, default=0.0)
    width = next((w for w in BIN_WIDTHS if math.ceil(top / w) <= MAX_BINS), BIN_WIDTHS[-1])
    bins = max(1, math.ceil(top / width))  # numpy's last bin includes its right edge
    edges = np.arange(bins + 1, dtype=np.float64) * width
    counts, _ = np.histogram(np.asarray(roots, dtype=np.float64), bins=edges)
    return tuple(float(e) for e in edges), tuple(int(c) for c in counts)


def _image_sizes(dataset: CocoDataset, read_sizes: bool) -> ImageSizes:
    counts: Counter[tuple[int, int]] = Counter()
    from_headers = unreadable = 0
    for i, image in enumerate(dataset.images):
        if image.width is not None and image.height is not None:
            counts[image.width, image.height] += 1
            continue
        if not read_sizes or dataset.image_root is None:
            unreadable += 1
            continue
        try:
            height, width = image_size(dataset.image_path(i))
        except ImageError:
            unreadable += 1
            continue
        counts[width, height] += 1
        from_headers += 1
    return ImageSizes(dict(counts), from_headers, unreadable)
