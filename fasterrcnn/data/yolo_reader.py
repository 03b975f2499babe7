"""YOLO datasets in the Ultralytics layout: a ``data.yaml`` naming the dataset root
(``path``), the image folders of each split (``train``, ``val``, ...) and the classes
(``names``: a list, or a mapping from class id to name).

- A split is a folder of images (searched recursively), a ``.txt`` file listing image paths,
  or a list of those; paths are relative to ``path``, which is relative to the YAML's folder
  (the YAML's folder when absent).
- The labels of ``.../images/.../NAME.jpg`` are in ``.../labels/.../NAME.txt`` (the last
  ``images`` folder of the path becomes ``labels``), or beside the image when its path has no
  ``images`` folder. One line per box: ``class cx cy w h``, normalized to the image size.
- An image without a label file, or with an empty one, is a background image (no box).
- The image size comes from the file's header: no image is decoded.
- Category id ``k`` is YOLO class ``k``.

A label file with a bad line (a wrong number of fields, a class outside ``names``, a value
that is not a finite number, a centre outside [0, 1] or a size outside (0, 1]) is left out
with its image, counted and named (file and line) in the report. A box that sticks out of its
image is clipped and counted.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import yaml

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.images import IMAGE_SUFFIXES, ImageError, image_size
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.data.label_files import LabelledImage, ReportBuilder, build_dataset, clipped_box


class _BadLine(ValueError):
    """A label line that leaves its file out."""


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read it ({err})") from None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "cannot be parsed"
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DatasetError(f"{path}: not valid YAML ({problem}{where})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: not a YAML mapping (a data.yaml has path, train, val, names)")
    return data


def class_names(data: dict[str, Any], source: Path) -> dict[int, str]:
    """``names`` as class id -> name."""
    names = data.get("names")
    if names is None:
        raise DatasetError(f"{source}: no 'names' (the class names)")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise DatasetError(f"{source}: 'names' is not a list or an id-to-name mapping")
    table: dict[int, str] = {}
    for key, name in names.items():
        if not (isinstance(key, int) and not isinstance(key, bool) and key >= 0):
            raise DatasetError(f"{source}: class id {key!r} in 'names' is not an integer >= 0")
        if not isinstance(name, (str, int, float)) or str(name) == "":
            raise DatasetError(f"{source}: class {key} has no name")
        table[key] = str(name)
    if len(set(table.values())) != len(table):
        raise DatasetError(f"{source}: 'names' lists a name twice")
    nc = data.get("nc")
    if nc is not None and nc != len(table):
        raise DatasetError(f"{source}: 'nc' is {nc!r} but 'names' has {len(table)} classes")
    return dict(sorted(table.items()))


def split_images(data: dict[str, Any], split: str, source: Path) -> list[Path]:
    """The image files of ``split``, in sorted order, each once."""
    if split not in data or data[split] in (None, ""):
        present = [key for key in ("train", "val", "test") if data.get(key)]
        raise DatasetError(f"{source}: no {split!r} split (it has {', '.join(present) or 'none'})")
    root = Path(data.get("path") or ".")
    root = root if root.is_absolute() else source.parent / root
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    found: set[Path] = set()
    for entry in entries:
        if not isinstance(entry, str):
            raise DatasetError(f"{source}: split {split!r} lists {entry!r}, not a path")
        location = Path(entry) if Path(entry).is_absolute() else root / entry
        if location.is_dir():
            found.update(p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif location.is_file() and location.suffix == ".txt":
            for line in location.read_text().splitlines():
                if line.strip():
                    listed = Path(line.strip())
                    found.add(listed if listed.is_absolute() else root / listed)
        else:
            raise DatasetError(f"{source}: split {split!r}: {location} does not exist")
    return sorted(found)


def label_path(image: Path) -> Path:
    """Where the labels of ``image`` are (see the module docstring)."""
    folder, name = os.path.split(str(image))
    parts = folder.split(os.sep)
    if "images" in parts:
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
    return Path(os.sep.join(parts), os.path.splitext(name)[0] + ".txt")


def _parse_line(line: str, names: dict[int, str]) -> tuple[int, tuple[float, ...]]:
    fields = line.split()
    if len(fields) != 5:
        raise _BadLine(f"{len(fields)} fields, not 5 (class cx cy w h)")
    try:
        category = int(fields[0])
    except ValueError:
        raise _BadLine(f"class {fields[0]!r} is not an integer") from None
    if category not in names:
        raise _BadLine(f"class {category} is not in names")
    for text in fields[1:]:
        try:
            value = float(text)
        except ValueError:
            raise _BadLine(f"value {text!r} is not a number") from None
        if not math.isfinite(value):
            raise _BadLine(f"value {text!r} is not finite")
    values = tuple(float(v) for v in fields[1:])
    cx, cy, w, h = values
    if not (0.0 <= cx <= 1.0 and 0.0 <= cy <= 1.0):
        raise _BadLine(f"centre ({cx}, {cy}) is outside [0, 1]")
    if not (0.0 < w <= 1.0 and 0.0 < h <= 1.0):
        raise _BadLine(f"size ({w}, {h}) is outside (0, 1]")
    return category, values


def _read_labels(
    path: Path, image: LabelledImage, names: dict[int, str], report: ReportBuilder
) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            category, (cx, cy, w, h) = _parse_line(line, names)
        except _BadLine as err:
            raise _BadLine(f"{path}:{number}: {err}") from None
        width, height = image.width, image.height
        box = (
            (cx - w / 2) * width, (cy - h / 2) * height,
            (cx + w / 2) * width, (cy + h / 2) * height,
        )  # fmt: skip
        kept = clipped_box(box, height, width, report)
        if kept is not None:
            image.boxes.append(kept)
            image.category_ids.append(category)
            image.crowd.append(False)


def read_yolo(
    data_yaml: str | Path, images: str | Path | None = None, *, split: str = "train"
) -> CocoDataset:
    """The ``split`` of the YOLO dataset ``data_yaml`` (see the module docstring); ``images``
    replaces the split's image folder."""
    source = Path(data_yaml)
    data = read_yaml(source)
    names = class_names(data, source)
    if images is not None:
        data = {**data, "path": str(Path(images).resolve()), split: "."}
    paths = split_images(data, split, source)
    if not paths:
        raise DatasetError(f"{source}: split {split!r} has no images")
    root = Path(os.path.commonpath([p.parent for p in paths]))
    report = ReportBuilder("yolo")
    labelled: list[LabelledImage] = []
    unlabelled = 0
    label_dirs: set[Path] = set()
    label_paths = [label_path(path) for path in paths]
    for path, labels in zip(paths, label_paths, strict=True):
        try:
            height, width = image_size(path)
        except ImageError as err:
            report.dropped("images that cannot be read", str(err))
            continue
        image = LabelledImage(path.relative_to(root).as_posix(), height, width)
        label_dirs.add(labels.parent)
        if labels.is_file():
            try:
                _read_labels(labels, image, names, report)
            except _BadLine as err:
                report.dropped("label files with a bad line (left out with their image)", str(err))
                continue
            except (OSError, UnicodeDecodeError) as err:
                report.dropped("label files that cannot be read", f"{labels}: {err}")
                continue
        else:
            unlabelled += 1
        labelled.append(image)
    report.report.unlabelled_images = unlabelled
    if unlabelled:
        report.note(f"{unlabelled} images have no label file: read as background images")
    expected = set(label_paths)
    orphans = sorted(
        p for d in label_dirs if d.is_dir() for p in d.glob("*.txt") if p not in expected
    )
    if orphans:
        report.dropped("label files without an image", ", ".join(p.name for p in orphans[:3]),
                       n=len(orphans))  # fmt: skip
    return build_dataset(labelled, list(names.values()), list(names), root, str(source), report)
