"""The COCO data layer: an instances file read, validated and indexed as pycocotools reads
it, with one-line errors for bad files."""

from __future__ import annotations

import contextlib
import io
import json
import pickle

import numpy as np
import pytest
from helpers.coco_slice import ANN_FILE, EMPTY_IMAGES, IMAGES, LONE_TP_PRECISION
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fasterrcnn.config import ClassTable
from fasterrcnn.data.coco import CocoDataset, CocoImage, DatasetError
from fasterrcnn.data.coco_classes import COCO_80, COCO_CATEGORIES
from fasterrcnn.evaluation.coco_metrics import STAT_NAMES, evaluate_results
from fasterrcnn.evaluation.results_json import (
    results_to_json,
)

# --- dataset -------------------------------------------------------------------------------


def test_dataset_reads_the_val2017_slice(dataset, raw):
    assert len(dataset) == 10 and dataset.path == ANN_FILE and dataset.image_root == IMAGES
    assert [image.id for image in dataset.images] == [image["id"] for image in raw["images"]]
    assert dataset.images[0] == CocoImage(
        id=139, file_name="000000000139.jpg", height=426, width=640
    )
    assert dataset.classes == COCO_80
    assert sum(len(dataset.annotations(image.id)) for image in dataset.images) == 90
    assert all(dataset.annotations(image_id) == [] for image_id in EMPTY_IMAGES)
    crowd = [a for image in dataset.images for a in dataset.annotations(image.id) if a["iscrowd"]]
    assert len(crowd) == 2
    assert dataset.index_of(87038) == [image["id"] for image in raw["images"]].index(87038)
    assert dataset.image_path(0) == IMAGES / "000000000139.jpg"
    assert dataset.missing_images() == []
    with pytest.raises(KeyError, match="12345"):
        dataset.index_of(12345)
    # The file already has area/iscrowd/id everywhere: coco_dict() is its content unchanged.
    coco = dataset.coco_dict()
    assert coco["annotations"] == raw["annotations"] and coco["images"] == raw["images"]


def test_missing_images_are_reported(raw, tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "dir.jpg").mkdir()
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg"},
            {"id": 2, "file_name": "dir.jpg"},
            {"id": 3, "file_name": "gone.jpg"},
        ],
        "annotations": [],
        "categories": raw["categories"],
    }
    assert CocoDataset.load(data, tmp_path).missing_images() == [1, 2]


def test_class_table_round_trip_over_the_80_categories(raw):
    table = ClassTable.from_categories(list(reversed(raw["categories"])))
    assert len(table) == 80 and table == COCO_80
    assert [table.index_of(cid) for cid, _ in COCO_CATEGORIES] == list(range(80))
    assert table.category_ids[:13] == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14)
    assert (table.index_of(90), table.names[79]) == (79, "toothbrush")
    assert (table.index_of(13), table.names[table.index_of(13)]) == (11, "stop sign")
    with pytest.raises(KeyError, match="category id 12 "):
        table.index_of(12)


def test_custom_categories_map_by_id():
    categories = [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}, {"id": 42, "name": "x"}]
    data = {
        "images": [{"id": 10, "file_name": "a.jpg"}],
        "annotations": [{"image_id": 10, "category_id": 42, "bbox": [0, 0, 5, 5]}],
        "categories": categories,
    }
    dataset = CocoDataset.load(data)
    assert dataset.classes == ClassTable(category_ids=(3, 7, 42), names=("three", "seven", "x"))
    assert [dataset.classes.index_of(c) for c in (3, 7, 42)] == [0, 1, 2]
    with pytest.raises(ValueError, match="duplicate"):
        ClassTable.from_categories([*categories, {"id": 3, "name": "again"}])


def test_coco_dict_fills_area_iscrowd_and_ids_and_pycocotools_evaluates_it():
    data = {
        "images": [{"id": 5, "file_name": "a.jpg"}, {"id": 9, "file_name": "b.jpg"}],
        "annotations": [
            {"image_id": 5, "category_id": 3, "bbox": [10, 10, 20, 30]},
            {"id": 40, "image_id": 5, "category_id": 7, "bbox": [50, 60, 40, 10]},
            {"image_id": 9, "category_id": 3, "bbox": [0.5, 1.5, 2.5, 4.0], "iscrowd": 0},
        ],
        "categories": [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}],
    }
    dataset = CocoDataset.load(data)
    coco = dataset.coco_dict()
    assert [a["id"] for a in coco["annotations"]] == [41, 40, 42]
    assert [a["area"] for a in coco["annotations"]] == [600.0, 400.0, 10.0]
    assert [a["iscrowd"] for a in coco["annotations"]] == [0, 0, 0]
    assert "area" not in data["annotations"][0]  # the caller's dict is left alone
    assert dataset.annotations(9)[0]["id"] == 42

    gt_as_detections = np.array(
        [[a["image_id"], *a["bbox"], 0.9, a["category_id"]] for a in coco["annotations"]]
    )
    metrics = evaluate_results(dataset, gt_as_detections)
    assert metrics.stats["AP"] == 1.0 and metrics.stats["AP50"] == 1.0
    assert [(c.category_id, c.name, c.instances) for c in metrics.per_category] == [
        (3, "a", 2),
        (7, "b", 1),
    ]
    assert metrics.per_category[0].ap == 1.0
    assert metrics.per_category[1].ap == pytest.approx(LONE_TP_PRECISION, rel=0, abs=2**-53)
    # pycocotools itself takes the dict and agrees.
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset.coco_dict()
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results_to_json(gt_as_detections)), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert [metrics.stats[name] for name in STAT_NAMES] == evaluator.stats.tolist()


# --- bad files -----------------------------------------------------------------------------


def _base() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5]},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 5]},
        ],
        "categories": [{"id": 3, "name": "c"}],
    }


def _unknown_images(d: dict) -> None:
    for i, image_id in ((17, 999), (18, 1000), (19, 999)):
        d["annotations"].append(
            {"id": i, "image_id": image_id, "category_id": 3, "bbox": [0, 0, 1, 1]}
        )


BAD_DATASETS = [
    (lambda d: d.pop("images"), "no 'images' list"),
    (lambda d: d.update(annotations={}), "'annotations' is an object, not a list"),
    (lambda d: d.update(categories=None), "'categories' is null, not a list"),
    (lambda d: d["images"].append([3]), "images[2] is a list, not an object"),
    (lambda d: d["images"][1].update(id="2"), "images[1] has no integer id"),
    (lambda d: d["images"][1].pop("file_name"), "image 2 has no file_name string"),
    (
        lambda d: d["images"][1].update(file_name="../x.jpg"),
        "image 2 has file_name '../x.jpg' outside the image folder",
    ),
    (lambda d: d["images"][1].update(id=1), "duplicate image id 1 (images[0] and images[1])"),
    (lambda d: d["images"][1].update(height=-4), "image 2 has height -4"),
    (lambda d: d.update(images=[]), "no images"),
    (lambda d: d["categories"].append({"id": 4.0, "name": "x"}), "categories[1] has no integer id"),
    (lambda d: d["categories"].append({"id": 4}), "category 4 has no name string"),
    (lambda d: d["categories"].append({"id": 3, "name": "x"}), "duplicate category id 3"),
    (lambda d: d["annotations"][1].pop("bbox"), "annotation 2 has no bbox of 4 numbers"),
    (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), "annotation 2 has no bbox of 4"),
    (lambda d: d["annotations"][1].update(bbox=[1, 2, "3", 4]), "annotation 2 has no bbox of 4"),
    (
        lambda d: d["annotations"][0].update(bbox=[1, 2, 3, -4]),
        "annotation 1 has a negative bbox width or height [1, 2, 3, -4]",
    ),
    (lambda d: d["annotations"][1].update(id=1), "duplicate annotation id 1"),
    (
        _unknown_images,
        "3 annotations point at unknown images (first: annotation 17 -> image_id 999)",
    ),
    (
        lambda d: d["annotations"][0].update(category_id=8),
        "1 annotation points at unknown categories (first: annotation 1 -> category_id 8)",
    ),
]


@pytest.mark.parametrize(("mutate", "problem"), BAD_DATASETS)
def test_bad_annotation_files_raise_one_line_errors(tmp_path, mutate, problem):
    data = _base()
    mutate(data)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data, indent=1))
    with pytest.raises(DatasetError) as error:
        CocoDataset.load(path)
    message = str(error.value)
    assert message == f"{path}: {problem}" or message.startswith(f"{path}: {problem}")
    assert "\n" not in message


def test_unreadable_annotation_files(tmp_path):
    bad_json = tmp_path / "instances.json"
    bad_json.write_text('{\n  "images":\n    ]\n}')
    cases = [
        (tmp_path / "absent.json", "absent.json: no such file"),
        (tmp_path, f"{tmp_path.name}: is a directory, not a JSON file"),
        (bad_json, "instances.json: not valid JSON (line 3, column 5: Expecting value)"),
    ]
    top_list = tmp_path / "list.json"
    top_list.write_text("[]")
    cases.append((top_list, "list.json: top level is a list, not an object"))
    for path, expected in cases:
        with pytest.raises(DatasetError) as error:
            CocoDataset.load(path)
        assert str(error.value).endswith(expected) and "\n" not in str(error.value)
    with pytest.raises(DatasetError, match="nowhere: no such image folder"):
        CocoDataset.load(_base(), tmp_path / "nowhere")


def test_dataset_error_pickles_and_stays_one_line():
    error = DatasetError("a.json: bad\nthing")
    assert str(error) == "a.json: bad thing"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
