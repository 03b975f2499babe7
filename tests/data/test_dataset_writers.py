"""The dataset writers against hand-written output with hand-computed boxes: COCO with sizes
filled from the image headers, VOC's 1-based convention (decimals, difficult objects), YOLO's
normalization (crowd boxes dropped, boxes clipped, empty label files), Label Studio's
percentages and scores; and write-then-read round trips through the readers.

The dataset: image ``a.png`` (40 x 50, size given) and ``b.jpg`` (20 x 30, size read from the
file, no boxes); classes cat (id 3) and dog (id 7), so YOLO class 0 is cat and 1 is dog.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.dataset_files import load_dataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.data.voc_writer import voc_number
from fasterrcnn.dataset_tools.convert import WRITE_FORMATS, convert_dataset

ANNOTATIONS = [
    # (x1, y1, x2, y2) = (10, 20, 40, 30)
    {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 10], "score": 0.9},
    # (0.5, 1.25, 10.626, 6.25): decimals
    {"id": 2, "image_id": 1, "category_id": 7, "bbox": [0.5, 1.25, 10.126, 5]},
    # (30, 5, 45, 15), a crowd annotation: a difficult VOC object, not in YOLO nor Label Studio
    {"id": 3, "image_id": 1, "category_id": 3, "bbox": [30, 5, 15, 10], "iscrowd": 1},
    # (45, 30, 55, 50): sticks out of the 50 x 40 image, clipped to (45, 30, 50, 40)
    {"id": 4, "image_id": 1, "category_id": 7, "bbox": [45, 30, 10, 20], "score": 0.7},
]

VOC_A = """<annotation>
  <filename>a.png</filename>
  <size>
    <width>50</width>
    <height>40</height>
    <depth>3</depth>
  </size>
  <segmented>0</segmented>
  <object>
    <name>cat</name>
    <pose>Unspecified</pose>
    <truncated>0</truncated>
    <difficult>0</difficult>
    <bndbox>
      <xmin>11</xmin>
      <ymin>21</ymin>
      <xmax>40</xmax>
      <ymax>30</ymax>
    </bndbox>
  </object>
  <object>
    <name>dog</name>
    <pose>Unspecified</pose>
    <truncated>0</truncated>
    <difficult>0</difficult>
    <bndbox>
      <xmin>1.5</xmin>
      <ymin>2.25</ymin>
      <xmax>10.63</xmax>
      <ymax>6.25</ymax>
    </bndbox>
  </object>
  <object>
    <name>cat</name>
    <pose>Unspecified</pose>
    <truncated>0</truncated>
    <difficult>1</difficult>
    <bndbox>
      <xmin>31</xmin>
      <ymin>6</ymin>
      <xmax>45</xmax>
      <ymax>15</ymax>
    </bndbox>
  </object>
  <object>
    <name>dog</name>
    <pose>Unspecified</pose>
    <truncated>0</truncated>
    <difficult>0</difficult>
    <bndbox>
      <xmin>46</xmin>
      <ymin>31</ymin>
      <xmax>55</xmax>
      <ymax>50</ymax>
    </bndbox>
  </object>
</annotation>
"""

VOC_B = """<annotation>
  <filename>b.jpg</filename>
  <size>
    <width>30</width>
    <height>20</height>
    <depth>3</depth>
  </size>
  <segmented>0</segmented>
</annotation>
"""

YOLO_A = """0 0.500000 0.625000 0.600000 0.250000
1 0.111260 0.093750 0.202520 0.125000
1 0.950000 0.875000 0.100000 0.250000
"""


def _result(result_id: str, name: str, xywh: list[float], score: float | None) -> dict:
    result = {
        "id": result_id,
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": 50,
        "original_height": 40,
        "image_rotation": 0,
        "value": {
            **dict(zip(["x", "y", "width", "height"], xywh, strict=True)),
            "rotation": 0,
            "rectanglelabels": [name],
        },
    }
    return result if score is None else {**result, "score": score}


@pytest.fixture
def dataset(tmp_path: Path) -> CocoDataset:
    root = tmp_path / "images"
    root.mkdir()
    assert cv2.imwrite(str(root / "a.png"), np.zeros((40, 50, 3), np.uint8))
    assert cv2.imwrite(str(root / "b.jpg"), np.zeros((20, 30, 3), np.uint8))
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 40, "width": 50},
            {"id": 2, "file_name": "b.jpg"},
        ],
        "annotations": ANNOTATIONS,
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }
    return CocoDataset.load(data, root)


def test_voc_numbers() -> None:
    assert [voc_number(v) for v in (12.0, 11.999, 12.5, 12.25, 12.126, -0.001, 3)] == [
        "12", "12", "12.5", "12.25", "12.13", "0", "3",
    ]  # fmt: skip


def test_coco(dataset, tmp_path) -> None:
    out = tmp_path / "out" / "instances.json"
    report = convert_dataset(dataset, "coco", out)
    written = json.loads(out.read_text())
    expected = dataset.coco_dict()
    expected["images"][1].update(height=20, width=30)  # from the file's header
    assert written == expected
    assert written["annotations"][0]["score"] == 0.9  # extra keys are kept
    assert (report.images, report.boxes, report.classes) == (2, 4, 2)
    assert report.lines() == [f"wrote 2 image(s), 4 box(es) and 2 class(es) as coco to {out}"]


def test_voc(dataset, tmp_path) -> None:
    out = tmp_path / "voc"
    report = convert_dataset(dataset, "voc", out)
    assert sorted(p.name for p in out.iterdir()) == ["a.xml", "b.xml", "classes.txt"]
    assert (out / "a.xml").read_text() == VOC_A
    assert (out / "b.xml").read_text() == VOC_B
    assert (out / "classes.txt").read_text() == "cat\ndog\n"
    assert (report.images, report.boxes, report.classes) == (2, 4, 2)
    assert not report.dropped and not report.repaired


def test_yolo(dataset, tmp_path) -> None:
    out = tmp_path / "yolo"
    report = convert_dataset(dataset, "yolo", out)
    assert (out / "labels" / "train" / "a.txt").read_text() == YOLO_A
    assert (out / "labels" / "train" / "b.txt").read_text() == ""  # no boxes: an empty file
    for name in ("a.png", "b.jpg"):
        link = out / "images" / "train" / name
        assert link.is_symlink() and link.resolve() == (dataset.image_root / name).resolve()
    text = (out / "data.yaml").read_text()
    assert "val: images/train  # only the train split was converted" in text
    assert yaml.safe_load(text) == {
        "path": str(out.absolute()),
        "train": "images/train",
        "val": "images/train",
        "names": ["cat", "dog"],
    }
    assert (report.images, report.boxes, report.classes) == (2, 3, 2)
    assert report.dropped == {"crowd or difficult boxes (YOLO has no ignore flag)": 1}
    assert report.repaired == {"boxes clipped to the image": 1}
    assert report.lines()[1:] == [
        "repaired: 1 boxes clipped to the image",
        "dropped: 1 crowd or difficult boxes (YOLO has no ignore flag)",
    ]


def test_yolo_val_split_copies(dataset, tmp_path) -> None:
    out = tmp_path / "yolo"
    convert_dataset(dataset, "yolo", out, split="val", copy_images=True)
    copy = out / "images" / "val" / "a.png"
    assert not copy.is_symlink()
    assert copy.read_bytes() == (dataset.image_root / "a.png").read_bytes()
    text = (out / "data.yaml").read_text()
    assert "train: images/val  # only the val split was converted" in text
    assert (out / "labels" / "val" / "a.txt").read_text() == YOLO_A


def test_labelstudio(dataset, tmp_path) -> None:
    out = tmp_path / "tasks.json"
    report = convert_dataset(dataset, "labelstudio", out)
    root = dataset.image_root.absolute()
    assert json.loads(out.read_text()) == [
        {
            "data": {"image": str(root / "a.png")},
            "predictions": [
                {
                    "model_version": "fasterrcnn",
                    "score": 0.8,  # the mean of the boxes' scores
                    "result": [
                        _result("box1", "cat", [20.0, 50.0, 60.0, 25.0], 0.9),
                        _result("box2", "dog", [1.0, 3.125, 20.252, 12.5], None),
                        _result("box4", "dog", [90.0, 75.0, 10.0, 25.0], 0.7),  # clipped
                    ],
                }
            ],
        },
        {
            "data": {"image": str(root / "b.jpg")},
            "predictions": [{"model_version": "fasterrcnn", "result": []}],
        },
    ]
    assert report.dropped == {"crowd or difficult boxes (Label Studio has no ignore flag)": 1}
    assert (report.images, report.boxes) == (2, 3)


def test_unknown_format_and_bad_split(dataset, tmp_path) -> None:
    with pytest.raises(DatasetError, match="unknown output format 'csv'"):
        convert_dataset(dataset, "csv", tmp_path / "out")
    with pytest.raises(DatasetError, match="not a plain folder name"):
        convert_dataset(dataset, "yolo", tmp_path / "out", split="a/b")
    assert WRITE_FORMATS == ("coco", "voc", "yolo", "labelstudio")
    assert not (tmp_path / "out").exists()


def _boxes(dataset: CocoDataset) -> dict[str, list[tuple[str, list[float], int]]]:
    """Per image file name: (class name, xyxy, iscrowd) of its boxes, sorted."""
    names = dict(zip(dataset.classes.category_ids, dataset.classes.names, strict=True))
    found = {}
    for image in dataset.images:
        boxes = []
        for a in dataset.annotations(image.id):
            x, y, w, h = a["bbox"]
            boxes.append((names[a["category_id"]], [x, y, x + w, y + h], a["iscrowd"]))
        found[image.file_name] = sorted(boxes)
    return found


def _same(read: dict, expected: dict, tolerance: float) -> None:
    assert read.keys() == expected.keys()
    for name in expected:
        assert [(n, c) for n, _, c in read[name]] == [(n, c) for n, _, c in expected[name]]
        for (_, box, _), (_, want, _) in zip(read[name], expected[name], strict=True):
            assert box == pytest.approx(want, abs=tolerance), name


def test_voc_round_trip(dataset, tmp_path) -> None:
    convert_dataset(dataset, "voc", tmp_path / "voc")
    read = load_dataset(tmp_path / "voc", dataset.image_root)
    assert read.classes.names == ("cat", "dog")  # classes.txt keeps the order
    expected = _boxes(dataset)
    expected["a.png"] = [  # the reader clips the box that sticks out
        (n, [*box[:2], min(box[2], 50), min(box[3], 40)], c) for n, box, c in expected["a.png"]
    ]
    _same(_boxes(read), expected, 0.005)  # 2 decimals


def test_yolo_round_trip(dataset, tmp_path) -> None:
    convert_dataset(dataset, "yolo", tmp_path / "yolo")
    read = load_dataset(tmp_path / "yolo" / "data.yaml")
    assert read.classes.names == ("cat", "dog")
    expected = {
        "a.png": sorted(
            (n, [*box[:2], min(box[2], 50), min(box[3], 40)], 0)
            for n, box, crowd in _boxes(dataset)["a.png"]
            if not crowd
        ),
        "b.jpg": [],
    }
    _same(_boxes(read), expected, 50 * 1e-6)  # 6 decimals of the image size
