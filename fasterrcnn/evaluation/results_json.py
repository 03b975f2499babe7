"""The COCO results JSON: detections as pycocotools' results rows, written and read back.

Results are a float64 array ``(M, 7)``: ``[image_id, x, y, w, h, score, category_id]``
(boxes in original-image pixels, dataset category ids), pycocotools' numpy results layout.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.json_checks import (
    DatasetError,
    Tally,
    is_box,
    is_int,
    is_number,
    kind,
    read_json,
)


def _round(values: np.ndarray, digits: int) -> list[float]:
    # Python's round (correctly rounded), as the project's JSON output uses everywhere.
    return [round(v, digits) for v in values.ravel().tolist()]


def results_from_detections(
    image_id: int, boxes_xyxy: np.ndarray, scores: np.ndarray, category_ids: np.ndarray
) -> np.ndarray:
    """One image's detections as results rows: xyxy -> xywh in float64, boxes rounded to
    3 decimals and scores to 5 (the project's JSON precision)."""
    boxes = np.asarray(boxes_xyxy).astype(np.float64).reshape(-1, 4)
    scores = np.asarray(scores).astype(np.float64).reshape(-1)
    category_ids = np.asarray(category_ids).reshape(-1)
    if not len(boxes) == len(scores) == len(category_ids):
        raise ValueError(
            f"{len(boxes)} boxes, {len(scores)} scores and {len(category_ids)} category ids"
        )
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    out = np.empty((len(boxes), 7), dtype=np.float64)
    out[:, 0] = image_id
    out[:, 1:5] = np.array(_round(xywh, 3), dtype=np.float64).reshape(-1, 4)
    out[:, 5] = _round(scores, 5)
    out[:, 6] = category_ids
    return out


def _iter_json(results: np.ndarray) -> Iterator[dict[str, Any]]:
    for row in np.asarray(results, np.float64).reshape(-1, 7):
        image_id, x, y, w, h, score, category_id = row.tolist()
        yield {
            "image_id": int(image_id),
            "category_id": int(category_id),
            "bbox": [x, y, w, h],
            "score": score,
        }


def results_to_json(results: np.ndarray) -> list[dict[str, Any]]:
    """The COCO results list (ints for ids, the array's floats unchanged)."""
    return list(_iter_json(results))


def write_results(path: str | Path, results: np.ndarray) -> None:
    """Write the COCO results JSON, entry by entry, atomically (temp file + ``os.replace``)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temporary.open("x", encoding="utf-8") as file:
            file.write("[")
            for i, entry in enumerate(_iter_json(results)):
                file.write(",\n" if i else "\n")
                file.write(json.dumps(entry, allow_nan=False))
            file.write("\n]\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_results(path: str | Path, dataset: CocoDataset) -> np.ndarray:
    """Read and validate a COCO results JSON for ``dataset``: the (M, 7) results array."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise DatasetError(f"{path}: top level is {kind(data)}, not a list of detections")
    image_ids = {image.id for image in dataset.images}
    category_ids = set(dataset.classes.category_ids)
    unknown_images, unknown_categories = Tally(), Tally()
    results = np.empty((len(data), 7), dtype=np.float64)
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: entry {i} is {kind(entry)}, not an object")
        for key, valid, what in (
            ("image_id", is_int, "an integer"),
            ("category_id", is_int, "an integer"),
            ("bbox", is_box, "4 numbers"),
            ("score", is_number, "a number"),
        ):
            if key not in entry:
                raise DatasetError(f"{path}: entry {i} has no {key!r}")
            if not valid(entry[key]):
                raise DatasetError(f"{path}: entry {i} has {key} {entry[key]!r}, not {what}")
        image_id, category_id, bbox = entry["image_id"], entry["category_id"], entry["bbox"]
        if bbox[2] < 0 or bbox[3] < 0:
            raise DatasetError(f"{path}: entry {i} has a negative bbox width or height {bbox}")
        known = image_id in image_ids and category_id in category_ids
        if image_id not in image_ids:
            unknown_images.add(f"entry {i} -> image_id {image_id}")
        if category_id not in category_ids:
            unknown_categories.add(f"entry {i} -> category_id {category_id}")
        if known:
            results[i] = (image_id, *bbox, entry["score"], category_id)
    for tally, what in ((unknown_images, "images"), (unknown_categories, "categories")):
        if tally.count:
            raise DatasetError(f"{path}: {tally.problem('detection', what)}")
    return results
