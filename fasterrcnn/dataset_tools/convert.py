"""Converting a dataset between formats: whatever format it was read from, the in-memory
dataset is written as COCO, Pascal VOC, YOLO or Label Studio pre-annotations
(``fasterrcnn data convert``).

What each format cannot hold is left out and counted in the :class:`ConversionReport`: YOLO
and Label Studio have no ignore flag (crowd and VOC ``difficult`` boxes are dropped) and need
their boxes inside the image (clipped).
"""

from __future__ import annotations

from pathlib import Path

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.conversion_report import ConversionReport
from fasterrcnn.data.dataset_writers import WRITE_FORMATS, write_dataset

__all__ = ["WRITE_FORMATS", "ConversionReport", "convert_dataset"]


def convert_dataset(
    dataset: CocoDataset,
    to: str,
    out: Path,
    *,
    split: str = "train",
    copy_images: bool = False,
) -> ConversionReport:
    """Write ``dataset`` in the format ``to`` (``coco``, ``voc``, ``yolo`` or
    ``labelstudio``) at ``out``: an instances file, a folder of XML files and
    ``classes.txt``, a folder with ``data.yaml``, ``images/SPLIT/`` and ``labels/SPLIT/``, or
    a task file.

    Nothing appears at ``out`` unless the whole conversion succeeds; a folder output must not
    exist or be empty, a file output replaces a file there. ``split`` names the YOLO split
    and ``copy_images`` copies its images instead of linking them. A :class:`DatasetError`
    names any problem in one line.
    """
    return write_dataset(dataset, to, Path(out), split=split, copy_images=copy_images)
