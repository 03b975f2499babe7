"""Outputs appear whole or not at all: a writer that fails half-way leaves nothing (no output,
no temporary sibling, no folder it created), an existing non-empty output folder is refused
in one line, and an existing file output is replaced only by a complete one."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fasterrcnn.data import voc_writer
from fasterrcnn.data.atomic_output import atomic_file, atomic_folder
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.dataset_tools.convert import convert_dataset


@pytest.fixture
def dataset(tmp_path: Path) -> CocoDataset:
    root = tmp_path / "images"
    root.mkdir()
    images = []
    for i in range(1, 4):
        assert cv2.imwrite(str(root / f"{i}.png"), np.zeros((8, 10, 3), np.uint8))
        images.append({"id": i, "file_name": f"{i}.png"})
    annotation = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}
    data = {"images": images, "annotations": [annotation], "categories": [{"id": 1, "name": "a"}]}
    return CocoDataset.load(data, root)


def _one_line(err: pytest.ExceptionInfo[DatasetError]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_failure_half_way_leaves_nothing(dataset, tmp_path, monkeypatch) -> None:
    calls = []

    def fail_on_the_second(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    real = voc_writer.voc_xml
    monkeypatch.setattr(voc_writer, "voc_xml", fail_on_the_second)
    out = tmp_path / "new" / "deeper" / "voc"
    with pytest.raises(DatasetError) as err:
        convert_dataset(dataset, "voc", out)
    assert _one_line(err) == f"{out}: cannot write (No space left on device)"
    assert len(calls) == 2
    assert not (tmp_path / "new").exists()  # the folders it made are gone too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_missing_image_leaves_nothing(dataset, tmp_path) -> None:
    (dataset.image_root / "3.png").unlink()
    for fmt in ("yolo", "coco", "labelstudio", "voc"):
        with pytest.raises(DatasetError, match=r"3\.png: no such "):
            convert_dataset(dataset, fmt, tmp_path / f"out_{fmt}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_non_empty_folder_is_refused(dataset, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    for fmt in ("voc", "yolo"):
        with pytest.raises(DatasetError) as err:
            convert_dataset(dataset, fmt, out)
        assert _one_line(err) == (
            f"{out}: the output folder exists and is not empty (name a new folder or empty it)"
        )
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "out"]
    (tmp_path / "file").write_text("")
    with pytest.raises(DatasetError, match="exists and is not a folder"):
        convert_dataset(dataset, "voc", tmp_path / "file")


def test_empty_folder_is_filled(dataset, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    convert_dataset(dataset, "voc", out)
    assert sorted(p.name for p in out.iterdir()) == ["1.xml", "2.xml", "3.xml", "classes.txt"]


def test_file_output_replaced_only_when_complete(dataset, tmp_path) -> None:
    out = tmp_path / "instances.json"
    out.write_text("old")
    (dataset.image_root / "2.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="not a readable image"):
        convert_dataset(dataset, "coco", out)
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "instances.json"]
    assert cv2.imwrite(str(dataset.image_root / "2.png"), np.zeros((8, 10, 3), np.uint8))
    convert_dataset(dataset, "coco", out)
    assert len(json.loads(out.read_text())["images"]) == 3
    with pytest.raises(DatasetError, match="is a folder, not a file"):
        convert_dataset(dataset, "coco", tmp_path / "images")


def test_replace_swaps_a_folder(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(out, replace=True) as temp:
        (temp / "new.txt").write_text("new")
        raise RuntimeError("a bug half-way")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    with atomic_folder(out, replace=True) as temp:
        (temp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_file_error_keeps_the_old_file(tmp_path) -> None:
    out = tmp_path / "a.json"
    out.write_text("old")
    with pytest.raises(KeyError), atomic_file(out) as temp:
        temp.write_text("half")
        raise KeyError("bug")
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
