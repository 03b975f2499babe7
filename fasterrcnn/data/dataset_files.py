"""One entry point for every dataset format: COCO instances files, Pascal VOC XML folders and
YOLO ``data.yaml`` datasets all become the same in-memory :class:`CocoDataset`.

The format is recognised from the path (a ``.json`` file is COCO, a folder of ``.xml`` files
or a VOC root with ``Annotations/`` is VOC, a ``.yaml``/``.yml`` file is YOLO) unless it is
named. In the in-memory dataset a VOC ``difficult`` object is a COCO crowd annotation
(``iscrowd: 1``): an ignored region for evaluation, left out of training unless asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.json_checks import DatasetError

DatasetFormat = Literal["coco", "voc", "yolo"]
FORMATS: tuple[str, ...] = get_args(DatasetFormat)
# Which split a YOLO data.yaml or a VOC root is read for, by default, per job.
TRAIN_SPLIT = "train"
EVAL_SPLIT = "val"


def detect_format(path: str | Path) -> DatasetFormat:
    """The format of the dataset at ``path``, from its name and kind (nothing is parsed)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "Annotations").is_dir() or any(path.glob("*.xml")):
            return "voc"
        raise DatasetError(
            f"{path}: a folder without .xml files or Annotations/ (a VOC dataset), and no "
            "other format is a folder; name the format with --format"
        )
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix in (".yaml", ".yml"):
        return "yolo"
    raise DatasetError(
        f"{path}: not a .json (COCO), .yaml (YOLO) or folder of .xml (VOC); name the format "
        "with --format coco|voc|yolo"
    )


def check_format(name: str) -> DatasetFormat:
    if name not in FORMATS:
        raise DatasetError(f"unknown dataset format {name!r} (choose from {', '.join(FORMATS)})")
    return name  # type: ignore[return-value]


def load_dataset(
    annotations: str | Path,
    images: str | Path | None = None,
    *,
    format: str | None = None,
    split: str | None = None,
    classes: str | Path | None = None,
    strict_boxes: bool = True,
    default_split: str = TRAIN_SPLIT,
) -> CocoDataset:
    """The dataset at ``annotations`` in any format (see the module docstring).

    ``images``: the image folder (COCO and a VOC folder of XML need it; a ``data.yaml`` and a
    VOC root name their own, which ``images`` replaces). ``split``: the YOLO split (``train``,
    ``val``, ...) or the VOC root's ``ImageSets/Main/<split>.txt``. ``classes``: a VOC class
    file, one name per line (its order is the class order). ``strict_boxes`` as in
    :meth:`CocoDataset.load`. Without ``split`` a YOLO dataset is read for ``default_split``
    and a VOC root for every XML file. A :class:`DatasetError` names any problem.
    """
    kind = check_format(format) if format is not None else detect_format(annotations)
    if kind != "voc" and classes is not None:
        raise DatasetError(f"a class file (--classes) is for VOC datasets, not {kind}")
    if kind == "coco":
        if split is not None:
            raise DatasetError("a COCO instances file has no splits (--split)")
        return CocoDataset.load(annotations, images, strict_boxes=strict_boxes)
    if kind == "voc":
        from fasterrcnn.data.voc_reader import read_voc

        return read_voc(annotations, images, split=split, classes=classes)
    from fasterrcnn.data.yolo_reader import read_yolo

    return read_yolo(annotations, images, split=split or default_split)


def names_its_images(annotations: str | Path, format: str | None = None) -> bool:
    """Whether the dataset at ``annotations`` says where its images are (a ``data.yaml``, a
    VOC root), so that no image folder needs to be given."""
    try:
        kind = check_format(format) if format is not None else detect_format(annotations)
    except DatasetError:
        return False
    path = Path(annotations)
    return kind == "yolo" or (kind == "voc" and (path / "JPEGImages").is_dir())
