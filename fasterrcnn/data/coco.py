"""A COCO detection dataset: an instances JSON read, validated and indexed.

:meth:`CocoDataset.load` checks everything evaluation and training rely on (ids, boxes,
references between images, annotations and categories). Any problem is a
:class:`DatasetError` whose one-line message names the file and the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fasterrcnn.config import ClassTable
from fasterrcnn.data.json_checks import (
    DatasetError,
    Tally,
    is_box,
    is_int,
    is_number,
    kind,
    read_json,
)
from fasterrcnn.data.load_report import LoadReport


@dataclass(frozen=True)
class CocoImage:
    """One ``images`` entry: its id from the file, its file name and size (None if absent)."""

    id: int
    file_name: str
    height: int | None
    width: int | None


def _entries(data: Mapping[str, Any], key: str, source: str) -> list[Any]:
    if key not in data:
        raise DatasetError(f"{source}: no {key!r} list")
    entries = data[key]
    if not isinstance(entries, list):
        raise DatasetError(f"{source}: {key!r} is {kind(entries)}, not a list")
    return entries


def _objects(entries: list[Any], key: str, source: str) -> list[dict[str, Any]]:
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DatasetError(f"{source}: {key}[{i}] is {kind(entry)}, not an object")
    return entries


def _parse_images(entries: list[dict[str, Any]], source: str) -> list[CocoImage]:
    images: list[CocoImage] = []
    position: dict[int, int] = {}
    for i, entry in enumerate(entries):
        image_id, file_name = entry.get("id"), entry.get("file_name")
        if not is_int(image_id):
            raise DatasetError(f"{source}: images[{i}] has no integer id")
        if image_id in position:
            first = position[image_id]
            raise DatasetError(
                f"{source}: duplicate image id {image_id} (images[{first}] and images[{i}])"
            )
        if not isinstance(file_name, str) or not file_name:
            raise DatasetError(f"{source}: image {image_id} has no file_name string")
        name = PurePosixPath(file_name)
        if name.is_absolute() or ".." in name.parts or "\\" in file_name:
            raise DatasetError(
                f"{source}: image {image_id} has file_name {file_name!r} outside the image folder"
            )
        size = []
        for key in ("height", "width"):
            value = entry.get(key)
            if value is not None and not (is_int(value) and value > 0):
                raise DatasetError(f"{source}: image {image_id} has {key} {value!r}")
            size.append(value)
        position[image_id] = i
        images.append(CocoImage(id=image_id, file_name=file_name, height=size[0], width=size[1]))
    return images


def _check_categories(entries: list[dict[str, Any]], source: str) -> None:
    seen: set[int] = set()
    for i, entry in enumerate(entries):
        category_id = entry.get("id")
        if not is_int(category_id):
            raise DatasetError(f"{source}: categories[{i}] has no integer id")
        if not isinstance(entry.get("name"), str):
            raise DatasetError(f"{source}: category {category_id} has no name string")
        if category_id in seen:
            raise DatasetError(f"{source}: duplicate category id {category_id}")
        seen.add(category_id)


def _label(annotation: dict[str, Any], index: int) -> str:
    annotation_id = annotation.get("id")
    return f"annotation {annotation_id}" if is_int(annotation_id) else f"annotations[{index}]"


def _check_annotation(
    annotation: dict[str, Any], index: int, source: str, strict_boxes: bool
) -> None:
    label = _label(annotation, index)
    if "id" in annotation and not is_int(annotation["id"]):
        raise DatasetError(f"{source}: annotations[{index}] has a non-integer id")
    bbox = annotation.get("bbox")
    if not is_box(bbox):
        raise DatasetError(f"{source}: {label} has no bbox of 4 numbers")
    if strict_boxes and (bbox[2] < 0 or bbox[3] < 0):
        raise DatasetError(f"{source}: {label} has a negative bbox width or height {bbox}")
    if "area" in annotation and not is_number(annotation["area"]):
        raise DatasetError(f"{source}: {label} has a non-numeric area")
    if "iscrowd" in annotation and annotation["iscrowd"] not in (0, 1):
        raise DatasetError(f"{source}: {label} has iscrowd {annotation['iscrowd']!r}, not 0 or 1")


def _parse_annotations(
    entries: list[dict[str, Any]],
    image_ids: set[int],
    category_ids: set[int],
    source: str,
    strict_boxes: bool = True,
) -> list[dict[str, Any]]:
    """Checked copies of the annotations with ``area``, ``iscrowd`` and ``id`` filled in."""
    unknown_images, unknown_categories = Tally(), Tally()
    used_ids: set[int] = set()
    for i, annotation in enumerate(entries):
        _check_annotation(annotation, i, source, strict_boxes)
        annotation_id = annotation.get("id")
        if annotation_id is not None:
            if annotation_id in used_ids:
                raise DatasetError(f"{source}: duplicate annotation id {annotation_id}")
            used_ids.add(annotation_id)
        image_id, category_id = annotation.get("image_id"), annotation.get("category_id")
        if not is_int(image_id) or image_id not in image_ids:
            unknown_images.add(f"{_label(annotation, i)} -> image_id {image_id!r}")
        if not is_int(category_id) or category_id not in category_ids:
            unknown_categories.add(f"{_label(annotation, i)} -> category_id {category_id!r}")
    for tally, what in ((unknown_images, "images"), (unknown_categories, "categories")):
        if tally.count:
            raise DatasetError(f"{source}: {tally.problem('annotation', what)}")
    next_id = max(used_ids, default=0) + 1
    filled: list[dict[str, Any]] = []
    for annotation in entries:
        copy = dict(annotation)
        if "id" not in copy:
            copy["id"], next_id = next_id, next_id + 1
        copy.setdefault("iscrowd", 0)
        copy.setdefault("area", float(copy["bbox"][2]) * float(copy["bbox"][3]))
        filled.append(copy)
    return filled


class CocoDataset:
    """A validated COCO instances dataset (use :meth:`load`).

    ``images`` keeps the file's order and ids; ``classes`` maps contiguous index ``i`` to the
    i-th category by id and its name.
    """

    def __init__(
        self,
        path: Path | None,
        image_root: Path | None,
        images: list[CocoImage],
        image_entries: list[dict[str, Any]],
        annotations: list[dict[str, Any]],
        categories: list[dict[str, Any]],
        report: LoadReport | None = None,
        source: str | None = None,
    ) -> None:
        self.path = path
        self.source = source or (str(path) if path is not None else "annotations dict")
        """What error messages call the dataset: its file or folder."""
        self.report = report or LoadReport()
        """What the reader repaired and dropped (see :mod:`~fasterrcnn.data.load_report`)."""
        self.image_root = image_root
        self.images = images
        self.classes = ClassTable.from_categories(categories)
        self._image_entries = image_entries
        self._annotations = annotations
        self._categories = categories
        self._index = {image.id: i for i, image in enumerate(images)}
        self._by_image: dict[int, list[int]] = {image.id: [] for image in images}
        for i, annotation in enumerate(annotations):
            self._by_image[annotation["image_id"]].append(i)

    @classmethod
    def load(
        cls,
        annotations: str | Path | Mapping[str, Any],
        image_root: str | Path | None = None,
        *,
        strict_boxes: bool = True,
        source: str | None = None,
        report: LoadReport | None = None,
    ) -> CocoDataset:
        """Read and validate an instances JSON file (or its already parsed dict).

        ``strict_boxes=False`` accepts bboxes of negative width or height (kept as they are,
        their filled-in ``area`` negative too) for a reader that drops and counts them itself,
        as :class:`~fasterrcnn.data.train_dataset.TrainingDataset` does; evaluation keeps the
        default, which rejects them. ``source`` names a parsed dict in error messages (the
        file a reader of another format built it from) and ``report`` is that reader's.
        """
        path: Path | None = None
        if isinstance(annotations, Mapping):
            data: Any = annotations
            source = source or "annotations dict"
        else:
            path = Path(annotations)
            source = str(path)
            data = read_json(path)
            if not isinstance(data, dict):
                raise DatasetError(f"{source}: top level is {kind(data)}, not an object")
        root = None if image_root is None else Path(image_root)
        if root is not None and not root.is_dir():
            problem = "not a directory" if root.exists() else "no such image folder"
            raise DatasetError(f"{root}: {problem}")
        image_entries = _objects(_entries(data, "images", source), "images", source)
        annotation_entries = _objects(_entries(data, "annotations", source), "annotations", source)
        categories = _objects(_entries(data, "categories", source), "categories", source)
        images = _parse_images(image_entries, source)
        if not images:
            raise DatasetError(f"{source}: no images")
        _check_categories(categories, source)
        filled = _parse_annotations(
            annotation_entries,
            {image.id for image in images},
            {category["id"] for category in categories},
            source,
            strict_boxes,
        )
        return cls(
            path,
            root,
            images,
            [dict(entry) for entry in image_entries],
            filled,
            [dict(category) for category in categories],
            report,
            source,
        )

    def __len__(self) -> int:
        return len(self.images)

    def index_of(self, image_id: int) -> int:
        """Position of ``image_id`` in :attr:`images`; KeyError if it is not in the dataset."""
        try:
            return self._index[image_id]
        except KeyError:
            raise KeyError(f"image id {image_id!r} is not in the dataset") from None

    def image_path(self, index: int) -> Path:
        """``image_root / file_name`` of the image at ``index``."""
        if self.image_root is None:
            raise ValueError("the dataset was loaded without an image_root")
        return self.image_root / self.images[index].file_name

    def missing_images(self) -> list[int]:
        """Indices of the images whose file is not a regular file under ``image_root``."""
        return [i for i in range(len(self.images)) if not self.image_path(i).is_file()]

    def annotations(self, image_id: int) -> list[dict[str, Any]]:
        """Copies of the (filled-in) annotations of ``image_id``, in file order."""
        self.index_of(image_id)
        return [dict(self._annotations[i]) for i in self._by_image[image_id]]

    def coco_dict(self) -> dict[str, Any]:
        """The validated dataset as pycocotools takes it: ``images``, ``annotations``,
        ``categories`` (fresh copies of each entry, file order).

        Annotations lacking them get ``area = w * h`` of their bbox, ``iscrowd = 0`` and a
        unique ``id`` (sequential, from one past the largest id in the file).
        """
        return {
            "images": [dict(entry) for entry in self._image_entries],
            "annotations": [dict(annotation) for annotation in self._annotations],
            "categories": [dict(category) for category in self._categories],
        }
