"""Writing a dataset as a folder of Pascal VOC XML files, one per image, and ``classes.txt``.

VOC boxes are 1-based inclusive pixel coordinates: the in-memory box ``(x1, y1, x2, y2)``
(0-based, continuous) is written as ``xmin = x1 + 1``, ``ymin = y1 + 1``, ``xmax = x2``, ``ymax = y2``, the
inverse of what the VOC reader does. Numbers are integers when they are whole, else rounded to
2 decimals. A crowd annotation is a ``<difficult>1</difficult>`` object. ``classes.txt`` lists
the class names in class-table order, one a line, for the reader to keep that order.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from fasterrcnn.data.atomic_output import atomic_folder
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.conversion_report import (
    ConversionReport,
    check_class_names,
    image_sizes,
    unique_stems,
    xyxy,
)

CLASS_FILE = "classes.txt"


def voc_number(value: float) -> str:
    """``value`` as VOC files write it: ``12`` when whole (after rounding to 2 decimals),
    else ``12.5`` or ``12.25``."""
    rounded = round(float(value), 2)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.2f}".rstrip("0")


def _add(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


def voc_xml(
    file_name: str,
    size: tuple[int, int],
    objects: list[tuple[str, tuple[float, float, float, float], bool]],
) -> str:
    """The XML document of one image: ``file_name`` (as the dataset names it, relative to its
    image folder), ``size`` (height, width) and ``objects`` as ``(class name, in-memory
    (x1, y1, x2, y2), difficult)``."""
    root = ET.Element("annotation")
    _add(root, "filename", file_name)
    size_element = ET.SubElement(root, "size")
    _add(size_element, "width", str(size[1]))
    _add(size_element, "height", str(size[0]))
    _add(size_element, "depth", "3")
    _add(root, "segmented", "0")
    for name, (x1, y1, x2, y2), difficult in objects:
        element = ET.SubElement(root, "object")
        _add(element, "name", name)
        _add(element, "pose", "Unspecified")
        _add(element, "truncated", "0")
        _add(element, "difficult", "1" if difficult else "0")
        box = ET.SubElement(element, "bndbox")
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            _add(box, tag, voc_number(value))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def write_voc(dataset: CocoDataset, out: str | Path, *, replace: bool = False) -> ConversionReport:
    """Write ``dataset`` into the folder ``out`` (which must not exist or be empty; with
    ``replace`` an existing one is replaced) as a whole or not at all: ``STEM.xml`` per image
    (stems numbered where file names repeat) and ``classes.txt``."""
    out = Path(out)
    check_class_names(dataset, "VOC")
    sizes = image_sizes(dataset)
    names = dict(zip(dataset.classes.category_ids, dataset.classes.names, strict=True))
    report = ConversionReport("voc", out, classes=len(names))
    stems = unique_stems(image.file_name for image in dataset.images)
    with atomic_folder(out, replace=replace) as temp:
        (temp / CLASS_FILE).write_text("".join(f"{n}\n" for n in names.values()), "utf-8")
        for image, size, stem in zip(dataset.images, sizes, stems, strict=True):
            objects = [
                (names[a["category_id"]], xyxy(a["bbox"]), a["iscrowd"] == 1)
                for a in dataset.annotations(image.id)
            ]
            report.boxes += len(objects)
            report.images += 1
            xml = voc_xml(image.file_name, size, objects)
            (temp / f"{stem}.xml").write_text(xml, encoding="utf-8")
    return report
