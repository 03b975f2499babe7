"""``dataset_stats``: counts of a hand-made dataset checked against hand-computed numbers, and
of the COCO slice against counts made here from its raw JSON; the table, the JSON form and the
figure."""

from __future__ import annotations

import json
import sys
from collections import Counter

import cv2
import numpy as np
import pytest
from helpers.coco_slice import ANN_FILE, EMPTY_IMAGES, IMAGES
from PIL import Image

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.load_report import LoadReport
from fasterrcnn.dataset_tools.stats import dataset_stats
from fasterrcnn.dataset_tools.stats_plot import DPI, FIGSIZE, check_plotting, plot_stats


def _box(image_id: int, category_id: int, bbox: list[float], crowd: int = 0) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": crowd}


@pytest.fixture
def handmade(tmp_path) -> CocoDataset:
    """Five images: 1 with boxes of every size class (and the thresholds exactly), 2 empty,
    3 with an ignored region only, 4 without a size in the file (64 x 48 on disk) and with
    one box, 5 without a size and unreadable."""
    cv2.imwrite(str(tmp_path / "d.png"), np.zeros((48, 64, 3), np.uint8))
    (tmp_path / "e.jpg").write_bytes(b"not an image")
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
            {"id": 2, "file_name": "b.jpg", "width": 200, "height": 100},
            {"id": 3, "file_name": "c.jpg", "width": 300, "height": 150},
            {"id": 4, "file_name": "d.png"},
            {"id": 5, "file_name": "e.jpg"},
        ],
        "annotations": [
            _box(1, 1, [0, 0, 10, 10]),  # small: 100
            _box(1, 1, [5, 5, 40, 40]),  # medium: 1600
            _box(1, 2, [0, 0, 100, 100]),  # large: 10000
            _box(1, 2, [1, 1, 32, 32]),  # exactly 32²: medium
            _box(1, 2, [2, 2, 96, 96]),  # exactly 96²: large
            _box(1, 1, [3, 3, 50, 50], crowd=1),
            _box(3, 2, [0, 0, 20, 20], crowd=1),
            _box(4, 1, [1, 2, 5, 31]),  # small: 155
        ],
        "categories": [
            {"id": 1, "name": "cat"},
            {"id": 2, "name": "dog"},
            {"id": 7, "name": "bird"},
        ],
    }
    report = LoadReport(format="yolo")
    report.repaired["boxes clipped to the image"] += 4
    report.dropped["boxes without area"] += 2
    report.notes.append("3 images have no label file: read as background images")
    report.unlabelled_images = 3
    return CocoDataset.load(data, tmp_path, report=report, source="handmade")


def test_handmade_counts(handmade) -> None:
    stats = dataset_stats(handmade)
    assert stats.images == 5
    assert [(c.category_id, c.name, c.boxes, c.ignored) for c in stats.classes] == [
        (1, "cat", 3, 1),
        (2, "dog", 3, 1),
        (7, "bird", 0, 0),
    ]
    assert (stats.boxes, stats.ignored) == (6, 2)
    assert (stats.images_with_boxes, stats.images_without_boxes) == (2, 3)
    assert stats.images_only_ignored == 1
    assert stats.background_images == 3
    assert stats.size_classes == {"small": 2, "medium": 2, "large": 2}
    # sqrt(area): 10, 40, 100, 32, 96, 12.45 in bins of 8 pixels up to 104
    assert stats.size_edges == tuple(float(8 * i) for i in range(14))
    expected = [0] * 13
    for bin_index in (1, 1, 4, 5, 12, 12):
        expected[bin_index] += 1
    assert stats.size_counts == tuple(expected)
    sizes = stats.image_sizes
    assert sizes.counts == {(200, 100): 2, (300, 150): 1, (64, 48): 1}
    assert (sizes.from_headers, sizes.unreadable) == (1, 1)
    assert sizes.summary() == {
        "width": {"min": 64, "median": 200, "max": 300},
        "height": {"min": 48, "median": 100, "max": 150},
    }
    assert stats.repaired == {"boxes clipped to the image": 4}
    assert stats.dropped == {"boxes without area": 2}
    assert dataset_stats(handmade, read_sizes=False).image_sizes.unreadable == 2


def test_handmade_table_and_dict(handmade) -> None:
    stats = dataset_stats(handmade)
    table = stats.table()
    assert "images       5: 2 with boxes, 3 without (1 with ignored regions only, 3 without a " \
        "label file)" in table  # fmt: skip
    assert "boxes        6, and 2 ignored regions" in table
    assert "small (< 32x32): 2 (33%)" in table
    assert "1 read from the image files; 1 unknown" in table
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines() if line}
    assert rows["cat"] == ["1", "3", "1"] and rows["dog"] == ["2", "3", "1"]
    assert "without any box: 1 class: bird" in table
    assert "repaired: 4 boxes clipped to the image" in table
    assert "dropped: 2 boxes without area" in table
    data = json.loads(json.dumps(stats.to_dict()))
    assert data["boxes"] == 6 and data["images_without_boxes"] == 3
    assert data["classes"][1] == {"category_id": 2, "name": "dog", "boxes": 3, "ignored": 1}
    assert data["image_sizes"]["sizes"][0] == {"width": 200, "height": 100, "images": 2}
    assert data["size_histogram"]["counts"] == list(stats.size_counts)


def test_coco_slice_matches_raw_json(raw, dataset) -> None:
    stats = dataset_stats(dataset)
    boxes, ignored = Counter(), Counter()
    sizes = Counter()
    for annotation in raw["annotations"]:
        counter = ignored if annotation["iscrowd"] else boxes
        counter[annotation["category_id"]] += 1
        if not annotation["iscrowd"]:
            area = annotation["bbox"][2] * annotation["bbox"][3]
            sizes["small" if area < 1024 else "medium" if area < 9216 else "large"] += 1
    assert {c.category_id: c.boxes for c in stats.classes} == {
        c["id"]: boxes[c["id"]] for c in raw["categories"]
    }
    assert {c.category_id: c.ignored for c in stats.classes} == {
        c["id"]: ignored[c["id"]] for c in raw["categories"]
    }
    assert (stats.boxes, stats.ignored) == (88, 2)
    assert stats.images == 10 and stats.images_without_boxes == len(EMPTY_IMAGES)
    assert stats.size_classes == dict(sizes)
    assert sum(stats.size_counts) == 88
    raw_sizes = Counter((image["width"], image["height"]) for image in raw["images"])
    assert stats.image_sizes.counts == dict(raw_sizes)
    # Without sizes in the file, the headers give the same.
    stripped = dict(raw, images=[
        {k: v for k, v in image.items() if k not in ("width", "height")} for image in raw["images"]
    ])  # fmt: skip
    headers = dataset_stats(CocoDataset.load(stripped, IMAGES)).image_sizes
    assert headers.counts == dict(raw_sizes) and headers.from_headers == 10
    assert stats.source == str(ANN_FILE) and stats.format == "coco"


def test_yolo_images_without_a_label_file(tmp_path, dataset) -> None:
    """The YOLO reader's note about images without a label file is counted."""
    from fasterrcnn.data.dataset_files import load_dataset
    from fasterrcnn.dataset_tools.convert import convert_dataset

    convert_dataset(dataset, "yolo", tmp_path / "yolo")
    (tmp_path / "yolo" / "labels" / "train" / "000000000139.txt").unlink()  # 20 boxes
    stats = dataset_stats(load_dataset(tmp_path / "yolo" / "data.yaml"))
    assert stats.format == "yolo" and stats.background_images == 1
    assert stats.images_without_boxes == 3 and (stats.boxes, stats.ignored) == (68, 0)
    assert "1 without a label file" in stats.table()


def test_plot_is_a_png_of_the_figure_size(tmp_path, dataset) -> None:
    pytest.importorskip("matplotlib")
    path = plot_stats(dataset_stats(dataset), tmp_path / "stats.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
        assert len(image.getcolors(1 << 20) or []) > 10  # drawn, not blank


def test_plot_without_matplotlib_is_one_line(tmp_path, monkeypatch, handmade) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"^[^\n]*pip install matplotlib$"):
        check_plotting()
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_stats(dataset_stats(handmade), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
