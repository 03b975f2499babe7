"""Writing a dataset as one COCO instances JSON file.

The in-memory dataset of every format already is COCO (a VOC ``difficult`` object is a crowd
annotation), so this writes :meth:`CocoDataset.coco_dict` with every image's ``width`` and
``height`` (read from the image headers where the dataset has none). Extra annotation keys,
such as the ``score`` of detections, are kept.
"""

from __future__ import annotations

import json
from pathlib import Path

from fasterrcnn.data.atomic_output import atomic_file
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.conversion_report import ConversionReport, image_sizes


def write_coco(dataset: CocoDataset, out: str | Path) -> ConversionReport:
    """Write ``dataset`` to the instances file ``out`` (replacing a file there) as a whole or
    not at all; a :class:`DatasetError` names any problem."""
    out = Path(out)
    data = dataset.coco_dict()
    for entry, (height, width) in zip(data["images"], image_sizes(dataset), strict=True):
        entry["height"], entry["width"] = height, width
    text = json.dumps(data, ensure_ascii=False) + "\n"
    with atomic_file(out) as temp:
        temp.write_text(text, encoding="utf-8")
    report = ConversionReport("coco", out, images=len(data["images"]))
    report.boxes = len(data["annotations"])
    report.classes = len(data["categories"])
    return report
