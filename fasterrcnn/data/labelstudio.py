"""Writing a dataset (or a run's detections) as Label Studio pre-annotations.

The file is the JSON list of tasks that Label Studio's import reads: per image
``{"data": {"image": ...}, "predictions": [{"model_version", "score", "result"}]}``, each box a
``rectanglelabels`` result whose ``x``, ``y``, ``width`` and ``height`` are percentages of the
image size (``original_width`` and ``original_height``). It fits a labeling configuration
with ``<RectangleLabels name="label" toName="image">`` and ``<Image name="image"
value="$image"/>``. Boxes that carry a ``score`` (detections) keep it, and the prediction's
score is their mean. Label Studio has no ignore flag: crowd (VOC ``difficult``) boxes are left
out and counted; boxes are clipped to the image.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fasterrcnn.data.atomic_output import atomic_file
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.conversion_report import (
    ConversionReport,
    check_class_names,
    clip_box,
    image_sizes,
    xyxy,
)

CROWD_DROPPED = "crowd or difficult boxes (Label Studio has no ignore flag)"


def rectangle(
    result_id: str,
    name: str,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    score: float | None = None,
) -> dict[str, Any]:
    """One ``rectanglelabels`` result: the in-memory ``box`` (x1, y1, x2, y2) of class ``name``
    in an image of ``size`` (height, width), in percent of the image."""
    x1, y1, x2, y2 = box
    height, width = size
    result: dict[str, Any] = {
        "id": result_id,
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "x": round(100 * x1 / width, 6),
            "y": round(100 * y1 / height, 6),
            "width": round(100 * (x2 - x1) / width, 6),
            "height": round(100 * (y2 - y1) / height, 6),
            "rotation": 0,
            "rectanglelabels": [name],
        },
    }
    if score is not None:
        result["score"] = round(float(score), 5)
    return result


def _image_reference(dataset: CocoDataset, index: int, image_prefix: str | None) -> str:
    file_name = dataset.images[index].file_name
    if image_prefix is not None:
        return image_prefix + file_name
    if dataset.image_root is None:
        return file_name
    return os.path.abspath(dataset.image_path(index))


def labelstudio_tasks(
    dataset: CocoDataset,
    report: ConversionReport,
    *,
    model_version: str = "fasterrcnn",
    image_prefix: str | None = None,
) -> list[dict[str, Any]]:
    """The task list of ``dataset`` (see the module docstring); what is left out or clipped
    is counted in ``report``."""
    check_class_names(dataset, "Label Studio")
    names = dict(zip(dataset.classes.category_ids, dataset.classes.names, strict=True))
    tasks = []
    for index, (image, size) in enumerate(zip(dataset.images, image_sizes(dataset), strict=True)):
        results = []
        for annotation in dataset.annotations(image.id):
            if annotation["iscrowd"] == 1:
                report.dropped[CROWD_DROPPED] += 1
                continue
            box = clip_box(xyxy(annotation["bbox"]), *size, report)
            if box is not None:
                name = names[annotation["category_id"]]
                score = annotation.get("score")
                results.append(rectangle(f"box{annotation['id']}", name, box, size, score))
        prediction: dict[str, Any] = {"model_version": model_version}
        scores = [r["score"] for r in results if "score" in r]
        if scores:
            prediction["score"] = round(sum(scores) / len(scores), 5)
        prediction["result"] = results
        reference = _image_reference(dataset, index, image_prefix)
        tasks.append({"data": {"image": reference}, "predictions": [prediction]})
        report.images += 1
        report.boxes += len(results)
    return tasks


def write_labelstudio(
    dataset: CocoDataset,
    out: str | Path,
    *,
    model_version: str = "fasterrcnn",
    image_prefix: str | None = None,
) -> ConversionReport:
    """Write ``dataset`` as the Label Studio task file ``out`` (replacing a file there), as a
    whole or not at all. Each task's image is ``image_prefix + file_name`` when a prefix is
    given (such as ``/data/local-files/?d=images/`` for Label Studio's local file storage),
    else the image file's absolute path."""
    out = Path(out)
    report = ConversionReport("labelstudio", out, classes=len(dataset.classes))
    tasks = labelstudio_tasks(
        dataset, report, model_version=model_version, image_prefix=image_prefix
    )
    text = json.dumps(tasks, ensure_ascii=False, indent=1) + "\n"
    with atomic_file(out) as temp:
        temp.write_text(text, encoding="utf-8")
    return report
