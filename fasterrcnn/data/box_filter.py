"""The construction-time filtering of :class:`~fasterrcnn.data.train_dataset.TrainingDataset`:
which annotations become training boxes and which images are kept, with the counts of what
was dropped (the rules are in that module's docstring).

The result is a few numpy arrays rather than Python objects per image or box, so that
``DataLoader`` workers share it with the main process instead of copying it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasterrcnn.config import ClassTable
from fasterrcnn.data.class_mapping import ClassMapping
from fasterrcnn.data.coco import CocoDataset, DatasetError


@dataclass(frozen=True)
class FilterCounts:
    """What the construction-time filtering kept and dropped.

    ``images_kept`` counts every kept image, ``background_kept`` of them without a box
    (background-only). ``images_dropped``: images without a usable box dropped by
    ``drop_empty``; ``crowd_images_dropped``: images dropped because their only boxes of the
    model's classes are crowd regions (which are not background). Boxes: ``boxes_kept``, the
    kept ones that clipping changed (``boxes_clipped``) and the dropped ones by reason.
    """

    images_kept: int
    images_dropped: int
    boxes_kept: int
    crowd_dropped: int
    outside_classes_dropped: int  # category not in the class table
    degenerate_dropped: int  # width or height <= 0 after clipping
    boxes_clipped: int
    background_kept: int = 0
    crowd_images_dropped: int = 0

    def line(self) -> str:
        """One line for a training log."""
        return (
            f"training images: {self.images_kept} kept ({self.background_kept} of them "
            f"background-only), {self.images_dropped} dropped without a usable box, "
            f"{self.crowd_images_dropped} dropped with only crowd boxes; boxes: "
            f"{self.boxes_kept} kept ({self.boxes_clipped} clipped to the image), dropped: "
            f"{self.crowd_dropped} crowd, {self.outside_classes_dropped} of categories outside "
            f"the class table, {self.degenerate_dropped} degenerate"
        )


@dataclass(frozen=True)
class FilteredImages:
    """The kept images and their boxes.

    ``image_ids`` int64 [I] (file order), ``file_names`` str [I], ``sizes`` int64 [I, 2]
    ``(height, width)`` from the file (-1 where it has none); image ``i``'s boxes are rows
    ``starts[i]:starts[i + 1]`` of ``boxes`` float64 [B, 4] ``(x1, y1, x2, y2)`` in file pixels
    and ``labels`` int64 [B] (indices into the class table).
    """

    image_ids: np.ndarray
    file_names: np.ndarray
    sizes: np.ndarray
    starts: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    counts: FilterCounts


def xyxy_clipped(bbox: list[float], height: int | None, width: int | None) -> list[float]:
    """A COCO ``(x, y, w, h)`` box as ``(x1, y1, x2, y2)``, clipped to the image when its
    size is known."""
    x, y, w, h = (float(v) for v in bbox)
    box = [x, y, x + w, y + h]
    if height is None or width is None:
        return box
    return [min(max(v, 0.0), limit) for v, limit in zip(box, (width, height) * 2, strict=True)]


def filter_annotations(
    dataset: CocoDataset,
    classes: ClassTable,
    source: str,
    *,
    drop_empty: bool = False,
    use_crowd: bool = False,
) -> FilteredImages:
    """Filter ``dataset``'s annotations against ``classes`` (see the rules of
    :mod:`fasterrcnn.data.train_dataset`); a :class:`DatasetError` naming ``source`` when no
    usable box is left at all."""
    mapping = ClassMapping.between(classes, dataset.classes)  # by id, else by name
    label_of = {
        dataset_id: classes.index_of(model_id)
        for model_id, dataset_id in mapping.to_dataset.items()
    }
    crowd = outside = degenerate = clipped = dropped = crowd_images = background = 0
    ids, names, sizes, starts = [], [], [], [0]
    boxes: list[list[float]] = []
    labels: list[int] = []
    for image in dataset.images:
        kept, crowd_region = 0, False
        for annotation in dataset.annotations(image.id):
            if annotation["iscrowd"] == 1 and not use_crowd:
                crowd += 1
                crowd_region |= annotation["category_id"] in label_of
                continue
            if annotation["category_id"] not in label_of:
                outside += 1
                continue
            box = xyxy_clipped(annotation["bbox"], image.height, image.width)
            if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
                degenerate += 1
                continue
            x, y, w, h = (float(v) for v in annotation["bbox"])
            clipped += box != [x, y, x + w, y + h]
            boxes.append(box)
            labels.append(label_of[annotation["category_id"]])
            kept += 1
        if not kept and crowd_region:
            crowd_images += 1
            continue
        if not kept and drop_empty:
            dropped += 1
            continue
        background += not kept
        sized = image.height is not None and image.width is not None
        ids.append(image.id)
        names.append(image.file_name)
        sizes.append((image.height, image.width) if sized else (-1, -1))
        starts.append(starts[-1] + kept)
    if not boxes:
        raise DatasetError(
            f"{source}: no image with a usable box after dropping {crowd} crowd, "
            f"{outside} outside-the-class-table and {degenerate} degenerate annotations "
            f"(of {len(dataset.images)} images)"
        )
    counts = FilterCounts(
        images_kept=len(ids),
        images_dropped=dropped,
        boxes_kept=len(boxes),
        crowd_dropped=crowd,
        outside_classes_dropped=outside,
        degenerate_dropped=degenerate,
        boxes_clipped=clipped,
        background_kept=background,
        crowd_images_dropped=crowd_images,
    )
    return FilteredImages(
        image_ids=np.array(ids, dtype=np.int64),
        file_names=np.array(names, dtype=np.str_),
        sizes=np.array(sizes, dtype=np.int64).reshape(-1, 2),
        starts=np.array(starts, dtype=np.int64),
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        labels=np.array(labels, dtype=np.int64),
        counts=counts,
    )
