"""A run's detections written as a dataset (``fasterrcnn detect --save-labels FORMAT``): the
images that were read, their detections after the score threshold as boxes, the model's
class table as the classes.

The outputs, inside the run's output folder (see :data:`LABEL_OUTPUTS`): ``labels/coco.json``
(an instances file whose annotations keep their ``score``), ``labels/voc/`` (one XML per
image and ``classes.txt``), ``labels/yolo/`` (``data.yaml``, ``labels/train/``, and
``images/train/`` linking to the source images) and ``labels/labelstudio.json`` (Label Studio
pre-annotations with the scores). Image file names are relative to the folder that holds all
the images (their common parent). Each output replaces the one of an earlier run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fasterrcnn.config import ClassTable
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.dataset_writers import write_dataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.inference.detections import Detections

LABEL_OUTPUTS = {
    "coco": "labels/coco.json",
    "voc": "labels/voc",
    "yolo": "labels/yolo",
    "labelstudio": "labels/labelstudio.json",
}
LABEL_FORMATS: tuple[str, ...] = tuple(LABEL_OUTPUTS)


def check_label_formats(formats: Sequence[str]) -> None:
    """Refuse a format that has no label output (before any image is run)."""
    for fmt in formats:
        if fmt not in LABEL_OUTPUTS:
            raise DatasetError(
                f"unknown label format {fmt!r} (choose from {', '.join(LABEL_FORMATS)})"
            )


@dataclass(frozen=True)
class LabelRecord:
    """What the labels keep of one image's detections (picklable, to gather across
    processes): its position in the input, absolute path, size and, as its JSON file has
    them, boxes ``[x1, y1, x2, y2]``, scores and category ids."""

    index: int
    path: str
    height: int
    width: int
    boxes: list[list[float]]
    scores: list[float]
    category_ids: list[int]


def label_record(index: int, path: str | Path, detections: Detections) -> LabelRecord:
    """The record of the image at ``index`` of the input, read from ``path``."""
    found = detections.to_dict()["detections"]  # rounded as the JSON files are
    return LabelRecord(
        index=index,
        path=os.path.abspath(path),
        height=int(detections.image_size[0]),
        width=int(detections.image_size[1]),
        boxes=[d["box"] for d in found],
        scores=[d["score"] for d in found],
        category_ids=[d["category_id"] for d in found],
    )


def detections_dataset(records: Iterable[LabelRecord], classes: ClassTable) -> CocoDataset:
    """The records (at least one) as a dataset, in input order: image ``id`` is the input
    position + 1, ``file_name`` the path relative to the images' common folder, each
    detection an annotation with its ``score``."""
    ordered = sorted(records, key=lambda record: record.index)
    root = os.path.commonpath([os.path.dirname(record.path) for record in ordered])
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for record in ordered:
        image_id = record.index + 1
        file_name = Path(os.path.relpath(record.path, root)).as_posix()
        images.append(
            {"id": image_id, "file_name": file_name, "height": record.height, "width": record.width}
        )
        for box, score, category_id in zip(
            record.boxes, record.scores, record.category_ids, strict=True
        ):
            x1, y1, x2, y2 = box
            width, height = round(x2 - x1, 3), round(y2 - y1, 3)
            annotation: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_id,
                "bbox": [x1, y1, width, height],
                "area": round(width * height, 3),
                "iscrowd": 0,
                "score": score,
            }
            annotations.append(annotation)
    categories = [
        {"id": category_id, "name": name}
        for category_id, name in zip(classes.category_ids, classes.names, strict=True)
    ]
    data = {"images": images, "annotations": annotations, "categories": categories}
    return CocoDataset.load(data, root, source="the run's detections")


def write_detection_labels(
    records: Iterable[LabelRecord], classes: ClassTable, formats: Sequence[str], out: Path
) -> list[Path]:
    """Write the records in each of ``formats`` into the folder ``out`` (the names of
    :data:`LABEL_OUTPUTS`, each replacing an earlier run's); the paths written. Nothing is
    written without a record. A :class:`DatasetError` names any problem."""
    records = list(records)
    if not records or not formats:
        return []
    dataset = detections_dataset(records, classes)
    written = []
    for fmt in formats:
        path = out / LABEL_OUTPUTS[fmt]
        write_dataset(dataset, fmt, path, replace=True, model_version="fasterrcnn")
        written.append(path)
    return written
