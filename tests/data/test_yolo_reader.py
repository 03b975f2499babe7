"""YOLO reading against hand-written label files with hand-computed boxes: normalized
centres and sizes, empty and missing label files (background images), the ``names`` forms,
splits, and every kind of bad line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.coco_slice import IMAGES

from fasterrcnn.data import images as image_module
from fasterrcnn.data.dataset_files import detect_format, load_dataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.data.yolo_reader import label_path, read_yolo

# Image sizes (h, w) of the slice's files used here.
SIZES = {"000000000139": (426, 640), "000000000802": (640, 424), "000000010764": (424, 640)}


def _dataset(tmp_path: Path, labels: dict[str, str | None], yaml: str | None = None) -> Path:
    """``tmp_path/ds`` with ``images/train/STEM.jpg`` (links to the slice's images) and
    ``labels/train/STEM.txt`` (None: no label file); its data.yaml."""
    root = tmp_path / "ds"
    for sub in ("images/train", "labels/train"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem, text in labels.items():
        os.symlink(IMAGES / f"{stem}.jpg", root / "images" / "train" / f"{stem}.jpg")
        if text is not None:
            (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    (root / "data.yaml").write_text(
        yaml or "path: .\ntrain: images/train\nval: images/train\nnames: [cat, dog]\n"
    )
    return root / "data.yaml"


def test_normalized_boxes_to_pixels(tmp_path: Path) -> None:
    data = _dataset(
        tmp_path,
        {"000000000139": "0 0.5 0.5 0.25 0.5\n1 0.125 0.25 0.0625 0.1\n", "000000000802": ""},
    )
    assert detect_format(data) == "yolo"
    dataset = load_dataset(data)
    assert dataset.classes.names == ("cat", "dog")
    assert dataset.classes.category_ids == (0, 1)
    assert [(i.file_name, i.height, i.width) for i in dataset.images] == [
        ("000000000139.jpg", 426, 640),
        ("000000000802.jpg", 640, 424),
    ]
    cat, dog = dataset.annotations(1)
    # cx 0.5 * 640 = 320, w 0.25 * 640 = 160: x from 240; cy 0.5 * 426 = 213, h 213: y 106.5.
    assert cat["bbox"] == pytest.approx([240.0, 106.5, 160.0, 213.0])
    assert dog["bbox"] == pytest.approx([60.0, 85.2, 40.0, 42.6])
    assert (cat["category_id"], dog["category_id"], cat["iscrowd"]) == (0, 1, 0)
    assert dataset.annotations(2) == []  # an empty label file: a background image
    assert dataset.report.lines() == []


def test_missing_label_files_are_background_and_orphans_counted(tmp_path: Path) -> None:
    data = _dataset(tmp_path, {"000000000139": "0 0.5 0.5 0.5 0.5\n", "000000000802": None})
    (data.parent / "labels" / "train" / "gone.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    dataset = read_yolo(data)
    assert len(dataset) == 2 and dataset.annotations(2) == []
    assert dataset.report.notes[0] == "1 images have no label file: read as background images"
    assert dataset.report.dropped == {"label files without an image": 1}


def test_boxes_sticking_out_are_clipped(tmp_path: Path) -> None:
    data = _dataset(tmp_path, {"000000000139": "0 1.0 0.5 0.5 0.5\n"})
    (annotation,) = read_yolo(data).annotations(1)
    assert annotation["bbox"] == pytest.approx([480.0, 106.5, 160.0, 213.0])
    assert read_yolo(data).report.repaired == {"boxes clipped to the image": 1}


def test_names_mapping_splits_and_list_files(tmp_path: Path) -> None:
    yaml = "path: .\ntrain: [images/train]\nval: val.txt\nnames:\n  0: cat\n  3: dog\n"
    data = _dataset(tmp_path, {"000000000139": "3 0.5 0.5 0.5 0.5\n", "000000000802": ""}, yaml)
    (data.parent / "val.txt").write_text("./images/train/000000000802.jpg\n")
    train = read_yolo(data, split="train")
    assert train.classes.category_ids == (0, 3)
    assert train.annotations(1)[0]["category_id"] == 3
    assert [i.file_name for i in read_yolo(data, split="val").images] == ["000000000802.jpg"]
    with pytest.raises(DatasetError, match=r"no 'test' split \(it has train, val\)"):
        read_yolo(data, split="test")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("0 0.5 0.5 0.5", "4 fields, not 5"),
        ("2 0.5 0.5 0.5 0.5", "class 2 is not in names"),
        ("x 0.5 0.5 0.5 0.5", "class 'x' is not an integer"),
        ("0 0.5 abc 0.5 0.5", "value 'abc' is not a number"),
        ("0 0.5 nan 0.5 0.5", "value 'nan' is not finite"),
        ("0 0.5 0.5 0 0.5", "size (0.0, 0.5) is outside (0, 1]"),
        ("0 0.5 0.5 1.5 0.5", "size (1.5, 0.5) is outside (0, 1]"),
        ("0 -0.1 0.5 0.5 0.5", "centre (-0.1, 0.5) is outside [0, 1]"),
    ],
)
def test_bad_lines_leave_their_file_out_named(tmp_path: Path, line: str, problem: str) -> None:
    data = _dataset(tmp_path, {"000000000139": f"0 0.5 0.5 0.5 0.5\n{line}\n", "000000000802": ""})
    dataset = read_yolo(data)
    assert [i.file_name for i in dataset.images] == ["000000000802.jpg"]
    (note,) = dataset.report.notes
    label = data.parent / "labels" / "train" / "000000000139.txt"
    assert f"{label}:2: {problem}" in note


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("path: .\ntrain: images/train\n", r"no 'names'"),
        ("path: .\nval: images/train\nnames: [a]\n", r"no 'train' split \(it has val\)"),
        ("names: [a\n", r"not valid YAML"),
        ("- a\n", r"not a YAML mapping"),
        ("path: .\ntrain: nowhere\nnames: [a]\n", r"nowhere does not exist"),
        ("path: .\ntrain: images/train\nnames: [a, a]\n", r"lists a name twice"),
        ("path: .\ntrain: images/train\nnames: [a]\nnc: 2\n", r"'nc' is 2"),
    ],
)
def test_unreadable_yaml(tmp_path: Path, yaml: str, message: str) -> None:
    data = _dataset(tmp_path, {"000000000139": ""}, yaml)
    with pytest.raises(DatasetError, match=message):
        read_yolo(data)


def test_label_path_rule() -> None:
    assert label_path(Path("/d/images/train/a.jpg")) == Path("/d/labels/train/a.txt")
    assert label_path(Path("/images/d/images/x/a.png")) == Path("/images/d/labels/x/a.txt")
    assert label_path(Path("/d/train/a.jpg")) == Path("/d/train/a.txt")
    assert label_path(Path("images/a.b.jpg")) == Path("labels/a.b.txt")
    assert label_path(Path("a.jpg")) == Path("a.txt")


def test_sizes_come_from_headers_without_decoding(tmp_path: Path, monkeypatch) -> None:
    data = _dataset(tmp_path, {stem: "" for stem in SIZES})

    def no_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(image_module, "read_image", no_decode)
    monkeypatch.setattr(image_module.cv2, "imdecode", no_decode)
    dataset = read_yolo(data)
    assert {Path(i.file_name).stem: (i.height, i.width) for i in dataset.images} == SIZES
