"""Pascal VOC datasets: a folder of XML files, one per image (as labelImg and CVAT write
them), or a VOC root (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``).

- The image of ``NAME.xml`` is the file of stem ``NAME`` in the image folder, else the
  XML's ``<filename>`` there; an XML without an image is left out and counted.
- VOC boxes are 1-based inclusive pixel indices (integers or decimals): the box
  ``(xmin, ymin, xmax, ymax)`` covers the continuous 0-based box
  ``(xmin - 1, ymin - 1, xmax, ymax)``, as detectron2 reads VOC.
- ``<difficult>1</difficult>`` makes the object a crowd annotation (``iscrowd: 1``): an
  ignored region for evaluation, left out of training unless asked for.
- The image size is the XML's ``<size>``, else (absent or 0) the image file's header.
- Without an image folder (labels only, to evaluate a results file) the image of an XML is
  its ``<filename>`` and its size must be in the XML.
- Classes: the ``classes`` file (one name per line, in class order), else a ``classes.txt``
  beside the XML files, else the names found, sorted; category ids are 1, 2, ... in that
  order. Objects of a name outside a given class list are dropped and counted.

An XML file that cannot be parsed, or whose objects lack a name or a numeric box, is left
out with its image, counted and named in the report.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.images import IMAGE_SUFFIXES, ImageError, image_size
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.data.label_files import LabelledImage, ReportBuilder, build_dataset, clipped_box

CLASS_FILE = "classes.txt"


class _BadFile(ValueError):
    """A problem that leaves one XML file out."""


def read_class_file(path: Path) -> list[str]:
    """The names of a class file, one per line (blank lines skipped); no duplicates."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read the class file ({err})") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise DatasetError(f"{path}: the class file names no class")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DatasetError(f"{path}: class {duplicates[0]!r} is listed twice")
    return names


def _layout(
    annotations: Path, images: Path | None, split: str | None
) -> tuple[list[Path], Path | None]:
    """The XML files to read and the image folder (None: not given)."""
    if (annotations / "Annotations").is_dir():  # a VOC root
        xml_dir, image_dir = annotations / "Annotations", images or annotations / "JPEGImages"
        if split is None:
            return sorted(xml_dir.glob("*.xml")), image_dir
        list_file = annotations / "ImageSets" / "Main" / f"{split}.txt"
        if not list_file.is_file():
            found = sorted(p.stem for p in list_file.parent.glob("*.txt") if "_" not in p.stem)
            raise DatasetError(
                f"{annotations}: no split {split!r} ({list_file} is missing; splits: "
                f"{', '.join(found) or 'none'})"
            )
        ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        return [xml_dir / f"{stem}.xml" for stem in ids], image_dir
    if split is not None:
        raise DatasetError(f"{annotations}: a folder of XML files has no splits (--split)")
    return sorted(annotations.glob("*.xml")), images


def _number(element: ET.Element, tag: str) -> float:
    text = element.findtext(tag)
    if text is None:
        raise _BadFile(f"no <{tag}>")
    try:
        value = float(text.strip())
    except ValueError:
        raise _BadFile(f"<{tag}> is {text.strip()!r}, not a number") from None
    if not math.isfinite(value):
        raise _BadFile(f"<{tag}> is {text.strip()!r}")
    return value


def _size(root: ET.Element) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    try:
        width, height = _number(size, "width"), _number(size, "height")
    except _BadFile:
        return None
    if width <= 0 or height <= 0 or not (width.is_integer() and height.is_integer()):
        return None
    return int(height), int(width)


def _objects(root: ET.Element) -> list[tuple[str, tuple[float, float, float, float], bool]]:
    objects = []
    for i, element in enumerate(root.iter("object")):
        name = (element.findtext("name") or "").strip()
        if not name:
            raise _BadFile(f"object {i + 1} has no <name>")
        box = element.find("bndbox")
        if box is None:
            raise _BadFile(f"object {i + 1} ({name}) has no <bndbox>")
        try:
            xmin, ymin, xmax, ymax = (_number(box, t) for t in ("xmin", "ymin", "xmax", "ymax"))
        except _BadFile as err:
            raise _BadFile(f"object {i + 1} ({name}): {err}") from None
        difficult = (element.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise _BadFile(f"object {i + 1} ({name}) has <difficult> {difficult!r}, not 0 or 1")
        objects.append((name, (xmin - 1, ymin - 1, xmax, ymax), difficult == "1"))
    return objects


def read_voc(
    annotations: str | Path,
    images: str | Path | None = None,
    *,
    split: str | None = None,
    classes: str | Path | None = None,
) -> CocoDataset:
    """The VOC dataset at ``annotations`` (see the module docstring) as a :class:`CocoDataset`."""
    folder = Path(annotations)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder of VOC XML files")
    xml_files, image_dir = _layout(folder, None if images is None else Path(images), split)
    if image_dir is not None and not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: no such image folder")
    if not xml_files:
        raise DatasetError(f"{folder}: no .xml files")
    class_file = Path(classes) if classes is not None else xml_files[0].parent / CLASS_FILE
    given = read_class_file(class_file) if classes is not None or class_file.is_file() else None
    by_stem: dict[str, str] = {}
    for path in sorted(image_dir.iterdir()) if image_dir is not None else []:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(path.stem, path.name)
    report = ReportBuilder("voc")
    parsed: list[tuple[LabelledImage, list[str]]] = []
    for xml_file in xml_files:
        try:
            root = ET.parse(xml_file).getroot()
            objects = _objects(root)
        except ET.ParseError as err:
            report.dropped("XML files that cannot be parsed", f"{xml_file.name}: {err}")
            continue
        except (_BadFile, OSError) as err:
            report.dropped("XML files with a broken object", f"{xml_file.name}: {err}")
            continue
        named = (root.findtext("filename") or "").strip()
        if image_dir is None:  # labels only (to evaluate a results file): the XML's word
            file_name: str | None = named or f"{xml_file.stem}.jpg"
        else:
            file_name = by_stem.get(xml_file.stem)
            if file_name is None and named and (image_dir / named).is_file():
                file_name = named
        if file_name is None:
            report.dropped("XML files without an image", xml_file.name)
            continue
        size = _size(root)
        if size is None:
            if image_dir is None:
                report.dropped("XML files without a size (and no image folder)", xml_file.name)
                continue
            try:
                size = image_size(image_dir / file_name)
            except ImageError as err:
                report.dropped("images without a size that cannot be read", str(err))
                continue
        image = LabelledImage(file_name, *size)
        names = []
        for name, box, difficult in objects:
            if given is not None and name not in given:
                report.dropped(f"objects of classes not in {class_file.name}", name)
                continue
            kept = clipped_box(box, image.height, image.width, report)
            if kept is not None:
                image.boxes.append(kept)
                image.crowd.append(difficult)
                names.append(name)
        parsed.append((image, names))
    class_names = given if given is not None else sorted({n for _, ns in parsed for n in ns})
    category_of = {name: i for i, name in enumerate(class_names, start=1)}
    for image, names in parsed:
        image.category_ids = [category_of[name] for name in names]
    return build_dataset(
        [image for image, _ in parsed], class_names, list(category_of.values()), image_dir,
        str(folder), report,
    )  # fmt: skip
