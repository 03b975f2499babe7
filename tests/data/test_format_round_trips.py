"""The 160-image COCO mini set through the other formats and back: COCO -> VOC -> COCO and
COCO -> YOLO -> COCO keep every box (to the target format's precision), every class name and
every background image, and pycocotools gives the same metrics to the same detections
whichever format holds the ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers.seeded import DATA

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.dataset_files import load_dataset
from fasterrcnn.dataset_tools.convert import convert_dataset
from fasterrcnn.evaluation.coco_metrics import evaluate_results

MINI = DATA / "coco_mini" / "instances_val2017_boxes.json"
Boxes = dict[str, list[tuple[str, tuple[float, ...], int]]]


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The mini set's boxes (COCO areas replaced by box areas, as VOC and YOLO can only have)
    and a folder of blank JPEGs of its images' sizes."""
    root = tmp_path_factory.mktemp("mini")
    data = json.loads(MINI.read_text())
    for annotation in data["annotations"]:
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    annotations = root / "instances.json"
    annotations.write_text(json.dumps(data))
    images = root / "images"
    images.mkdir()
    for image in data["images"]:
        blank = np.zeros((image["height"], image["width"], 3), np.uint8)
        cv2.imwrite(str(images / image["file_name"]), blank)
    return annotations, images


def boxes_by_file(dataset: CocoDataset, with_crowd: bool = True) -> Boxes:
    """Per image file: (class name, xywh box, iscrowd) of each annotation, sorted."""
    name_of = dict(zip(dataset.classes.category_ids, dataset.classes.names, strict=True))
    return {
        image.file_name: sorted(
            (name_of[a["category_id"]], tuple(a["bbox"]), a["iscrowd"])
            for a in dataset.annotations(image.id)
            if with_crowd or not a["iscrowd"]
        )
        for image in dataset.images
    }


def assert_same_boxes(got: Boxes, expected: Boxes, tolerance: float) -> None:
    """Each image has the expected boxes: every expected one paired with a distinct box of
    its class and crowd flag within ``tolerance`` px on each of x, y, w, h."""
    assert got.keys() == expected.keys()
    for file_name, objects in expected.items():
        assert len(got[file_name]) == len(objects), file_name
        left = list(got[file_name])
        for name, box, crowd in objects:
            match = next(
                (
                    other
                    for other in left
                    if other[0] == name
                    and other[2] == crowd
                    and np.abs(np.subtract(other[1], box)).max() <= tolerance
                ),
                None,
            )
            assert match is not None, f"{file_name}: no box for {name} {box}"
            left.remove(match)


def test_coco_voc_coco_keeps_every_box(mini: tuple[Path, Path], tmp_path: Path) -> None:
    annotations, images = mini
    coco = load_dataset(annotations, images)
    expected = boxes_by_file(coco)
    assert sum(len(v) for v in expected.values()) == 1376
    convert_dataset(coco, "voc", tmp_path / "voc")
    voc = load_dataset(tmp_path / "voc", images)
    # Corners written with two decimals: each within 0.005 px, width and height within 0.01.
    assert_same_boxes(boxes_by_file(voc), expected, tolerance=0.01)
    assert voc.classes.names == coco.classes.names  # the class file keeps COCO's order
    convert_dataset(voc, "coco", tmp_path / "back.json")
    back = load_dataset(tmp_path / "back.json", images)
    assert_same_boxes(boxes_by_file(back), expected, tolerance=0.01)
    assert back.classes.names == coco.classes.names


def test_coco_yolo_coco_keeps_every_box_but_crowds(mini: tuple[Path, Path], tmp_path: Path) -> None:
    annotations, images = mini
    coco = load_dataset(annotations, images)
    report = convert_dataset(coco, "yolo", tmp_path / "yolo")
    assert any("17" in line and "crowd" in line for line in report.lines())
    yolo = load_dataset(tmp_path / "yolo" / "data.yaml")
    expected = boxes_by_file(coco, with_crowd=False)
    # Six decimals of a normalized coordinate: 0.5e-6 of a side of at most 640 px, twice.
    assert_same_boxes(boxes_by_file(yolo), expected, tolerance=1e-3)
    assert yolo.classes.names == coco.classes.names
    convert_dataset(yolo, "coco", tmp_path / "back.json")
    back = load_dataset(tmp_path / "back.json", tmp_path / "yolo" / "images" / "train")
    assert_same_boxes(boxes_by_file(back), expected, tolerance=1e-3)


def _detections(coco: CocoDataset, seed: int = 0) -> list[tuple[str, str, tuple, float]]:
    """(file, class name, box, score): each ground-truth box moved by up to 20% of its size,
    half of them, plus one false positive per image, with random scores."""
    rng = np.random.default_rng(seed)
    rows = []
    for file_name, objects in boxes_by_file(coco, with_crowd=False).items():
        for name, (x, y, w, h), _ in objects:
            if rng.random() < 0.5:
                shift = rng.uniform(-0.2, 0.2, 4) * [w, h, w, h]
                rows.append((file_name, name, (x + shift[0], y + shift[1], w + shift[2],
                             h + shift[3]), float(rng.random())))  # fmt: skip
        rows.append((file_name, "dog", (10.0, 10.0, 50.0, 60.0), float(rng.random())))
    return rows


def _results(dataset: CocoDataset, rows: list) -> np.ndarray:
    """The detections as results rows with ``dataset``'s own image and category ids."""
    image_id = {image.file_name: image.id for image in dataset.images}
    category_id = dict(zip(dataset.classes.names, dataset.classes.category_ids, strict=True))
    return np.array([[image_id[f], *box, score, category_id[name]] for f, name, box, score in rows])


def test_same_metrics_from_each_format(mini: tuple[Path, Path], tmp_path: Path) -> None:
    annotations, images = mini
    data = json.loads(annotations.read_text())
    data["annotations"] = [a for a in data["annotations"] if not a["iscrowd"]]  # YOLO has none
    no_crowd = tmp_path / "no_crowd.json"
    no_crowd.write_text(json.dumps(data))
    coco = load_dataset(no_crowd, images)
    convert_dataset(coco, "voc", tmp_path / "voc")
    convert_dataset(coco, "yolo", tmp_path / "yolo")
    formats = {
        "coco": coco,
        "voc": load_dataset(tmp_path / "voc", images),
        "yolo": load_dataset(tmp_path / "yolo" / "data.yaml"),
    }
    rows = _detections(coco)
    stats = {k: evaluate_results(d, _results(d, rows)).stats for k, d in formats.items()}
    assert 0.1 < stats["coco"]["AP"] < 0.9  # the jitter makes a real, imperfect score
    for key, value in stats["coco"].items():
        assert stats["voc"][key] == pytest.approx(value, abs=1e-12), key
        assert stats["yolo"][key] == pytest.approx(value, abs=1e-12), key
