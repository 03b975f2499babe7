"""The options that name a dataset in any format, shared by ``train``, ``eval`` and ``data``."""

from __future__ import annotations

import argparse

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.dataset_files import FORMATS, load_dataset, names_its_images
from fasterrcnn.data.json_checks import DatasetError

ANNOTATIONS_HELP = (
    "the dataset: a COCO instances .json, a folder of Pascal VOC .xml (or a VOC root with "
    "Annotations/ and JPEGImages/), or a YOLO data.yaml"
)


def add_dataset_options(
    parser: argparse.ArgumentParser, *, default_split: str, required: bool = True
) -> None:
    """``--annotations``, ``--images``, ``--format``, ``--split`` and ``--classes``."""
    parser.add_argument("--annotations", required=required, metavar="PATH", help=ANNOTATIONS_HELP)
    parser.add_argument(
        "--images",
        metavar="DIR",
        help="the image folder (not needed for a data.yaml or a VOC root, which name theirs)",
    )
    parser.add_argument(
        "--format", choices=FORMATS, help="the dataset's format (default: from the path)"
    )
    parser.add_argument(
        "--split",
        metavar="NAME",
        help=f"the split of a data.yaml or a VOC root's ImageSets/Main (default {default_split})",
    )
    parser.add_argument(
        "--classes", metavar="FILE", help="VOC: class names, one per line (default: sorted)"
    )


def open_dataset(
    annotations: str,
    images: str | None,
    *,
    format: str | None,
    split: str | None,
    classes: str | None,
    default_split: str,
    strict_boxes: bool = True,
) -> CocoDataset:
    """:func:`~fasterrcnn.data.dataset_files.load_dataset`; a problem is a
    :class:`DatasetError` (the commands turn it into their one-line error)."""
    if images is None and not names_its_images(annotations, format):
        raise DatasetError(f"{annotations}: give the image folder with --images DIR")
    return load_dataset(
        annotations, images, format=format, split=split, classes=classes,
        strict_boxes=strict_boxes, default_split=default_split,
    )  # fmt: skip
