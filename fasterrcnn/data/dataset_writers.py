"""One entry point for every output format: the in-memory dataset written as a COCO instances
file, a folder of Pascal VOC XML files, a YOLO dataset or a Label Studio task file.

Every writer writes into a temporary sibling of its output and renames it into place at the
end, so that nothing appears under the output path unless the whole conversion succeeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.coco_writer import write_coco
from fasterrcnn.data.conversion_report import ConversionReport
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.data.labelstudio import write_labelstudio
from fasterrcnn.data.voc_writer import write_voc
from fasterrcnn.data.yolo_writer import write_yolo

WriteFormat = Literal["coco", "voc", "yolo", "labelstudio"]
WRITE_FORMATS: tuple[str, ...] = get_args(WriteFormat)
# What each format's output is: a file or a folder.
FOLDER_FORMATS = frozenset({"voc", "yolo"})


def write_dataset(
    dataset: CocoDataset,
    to: str,
    out: str | Path,
    *,
    split: str = "train",
    copy_images: bool = False,
    replace: bool = False,
    model_version: str = "fasterrcnn",
) -> ConversionReport:
    """Write ``dataset`` in the format ``to`` (one of :data:`WRITE_FORMATS`) at ``out``.

    A file output (COCO, Label Studio) replaces a file there; a folder output (VOC, YOLO)
    must not exist or be empty, unless ``replace``. ``split`` and ``copy_images`` are the
    YOLO split and whether its images are copied instead of linked; ``model_version`` names
    the Label Studio predictions. A :class:`DatasetError` names any problem.
    """
    if to == "coco":
        return write_coco(dataset, out)
    if to == "voc":
        return write_voc(dataset, out, replace=replace)
    if to == "yolo":
        return write_yolo(dataset, out, split=split, copy_images=copy_images, replace=replace)
    if to == "labelstudio":
        return write_labelstudio(dataset, out, model_version=model_version)
    raise DatasetError(f"unknown output format {to!r} (choose from {', '.join(WRITE_FORMATS)})")
