"""Writing a dataset in the Ultralytics YOLO layout.

``OUT/data.yaml`` names the dataset root (``path``, absolute), the image folders of the splits
relative to it and the class ``names`` (a list: class ``k`` is the ``k``-th class of the class
table). ``OUT/images/SPLIT/`` holds the images (symbolic links to the source images, or copies)
and ``OUT/labels/SPLIT/STEM.txt`` their boxes, one ``class cx cy w h`` line each, normalized to
the image size with 6 decimals (an empty file for an image without boxes). Only one split is
written: ``data.yaml`` points ``train`` and ``val`` both at it, with a comment saying so.

YOLO has no ignore flag, so crowd (VOC ``difficult``) boxes are left out and counted; boxes
are clipped to the image, as YOLO trainers require normalized coordinates within [0, 1].
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from fasterrcnn.data.atomic_output import atomic_folder
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.conversion_report import (
    ConversionReport,
    clip_box,
    image_sizes,
    unique_stems,
    xyxy,
)
from fasterrcnn.data.json_checks import DatasetError

DATA_FILE = "data.yaml"
CROWD_DROPPED = "crowd or difficult boxes (YOLO has no ignore flag)"
TOO_SMALL = "boxes whose normalized width or height rounds to 0 at 6 decimals"


def check_split(split: str) -> None:
    """A split name is one plain folder name."""
    if (
        not split.strip()
        or split in (".", "..")
        or any(ch in split for ch in "/\\\n\r")
        or split.startswith("#")
    ):
        raise DatasetError(f"split {split!r} is not a plain folder name")


def _yaml_entry(key: str, value: Any) -> str:
    text: str = yaml.safe_dump(
        {key: value}, allow_unicode=True, sort_keys=False, default_flow_style=False, width=10**9
    )
    return text.rstrip("\n")


def data_yaml(root: Path, split: str, names: Sequence[str]) -> str:
    """The ``data.yaml`` of a dataset at the absolute ``root`` with the one split ``split``."""
    folder = f"images/{split}"
    lines = [
        "# A YOLO dataset (Ultralytics layout) written by fasterrcnn.",
        _yaml_entry("path", str(root)),
        _yaml_entry(split, folder),
    ]
    for key in ("train", "val"):
        if key != split:
            lines.append(_yaml_entry(key, folder) + f"  # only the {split} split was converted")
    lines.append(_yaml_entry("names", list(names)))
    return "\n".join(lines) + "\n"


def yolo_line(
    class_index: int, box: tuple[float, float, float, float], size: tuple[int, int]
) -> str | None:
    """``class cx cy w h`` of the in-memory ``box`` (x1, y1, x2, y2) in an image of ``size``
    (height, width); None for a box whose width or height rounds to 0."""
    x1, y1, x2, y2 = box
    height, width = size
    values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
    fields = [f"{v:.6f}" for v in values]
    if float(fields[2]) == 0 or float(fields[3]) == 0:
        return None
    return f"{class_index} " + " ".join(fields) + "\n"


def _image_files(dataset: CocoDataset) -> list[Path]:
    if dataset.image_root is None:
        raise DatasetError(
            f"{dataset.source}: a YOLO dataset holds its images, and no image folder was given"
        )
    paths = [dataset.image_path(i) for i in range(len(dataset))]
    for image, path in zip(dataset.images, paths, strict=True):
        if not path.is_file():
            raise DatasetError(f"{path}: no such image file (image {image.id} of {dataset.source})")
    return paths


def write_yolo(
    dataset: CocoDataset,
    out: str | Path,
    *,
    split: str = "train",
    copy_images: bool = False,
    replace: bool = False,
) -> ConversionReport:
    """Write ``dataset`` as the split ``split`` of a YOLO dataset in the folder ``out`` (which
    must not exist or be empty; with ``replace`` an existing one is replaced), as a whole or
    not at all. The images are linked (``copy_images``: copied); image stems are numbered
    where they repeat, so that each image has its own label file."""
    out = Path(out)
    check_split(split)
    sources = _image_files(dataset)
    sizes = image_sizes(dataset)
    stems = unique_stems(image.file_name for image in dataset.images)
    classes = dataset.classes
    report = ConversionReport("yolo", out, classes=len(classes))
    with atomic_folder(out, replace=replace) as temp:
        images, labels = temp / "images" / split, temp / "labels" / split
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for image, source, size, stem in zip(dataset.images, sources, sizes, stems, strict=True):
            target = images / (stem + PurePosixPath(image.file_name).suffix)
            if copy_images:
                shutil.copyfile(source, target)
            else:
                os.symlink(os.path.abspath(source), target)
            lines = []
            for annotation in dataset.annotations(image.id):
                if annotation["iscrowd"] == 1:
                    report.dropped[CROWD_DROPPED] += 1
                    continue
                box = clip_box(xyxy(annotation["bbox"]), *size, report)
                if box is None:
                    continue
                line = yolo_line(classes.index_of(annotation["category_id"]), box, size)
                if line is None:
                    report.dropped[TOO_SMALL] += 1
                else:
                    lines.append(line)
            (labels / f"{stem}.txt").write_text("".join(lines), encoding="utf-8")
            report.images += 1
            report.boxes += len(lines)
        root = Path(os.path.abspath(out))
        (temp / DATA_FILE).write_text(data_yaml(root, split, classes.names), encoding="utf-8")
    return report
