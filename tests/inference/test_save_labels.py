"""``fasterrcnn detect --save-labels``: the boxes of every format's dataset equal the JSON
detections of the same run (to the format's precision), images that failed are left out,
the detections of a torchrun job's processes are gathered and written once, and a label
output that cannot be written is a one-line error.

The model is the small 3-class native checkpoint (R18, short side 320), at score threshold
0.1 so that each image has many boxes.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from conftest import IMAGES

from fasterrcnn.cli import main
from fasterrcnn.data.dataset_writers import WRITE_FORMATS
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.distributed import DistributedContext
from fasterrcnn.inference import folder_output
from fasterrcnn.inference.folder_output import FolderRun, detect_into_folder
from fasterrcnn.inference.label_output import LABEL_OUTPUTS

SOURCES = [IMAGES / "000000000139.jpg", IMAGES / "000000000802.jpg"]
STEMS = [p.stem for p in SOURCES]


def _expected(out: Path) -> dict[str, dict]:
    """The JSON detections of the run, by stem."""
    return {stem: json.loads((out / f"{stem}.json").read_text()) for stem in STEMS}


def _check(boxes: dict[str, list[tuple[str, list[float]]]], expected: dict, tolerance: float):
    """``boxes`` (by stem: class name and xyxy) are the JSON detections, in order."""
    assert boxes.keys() == expected.keys()
    for stem, found in boxes.items():
        want = expected[stem]["detections"]
        assert len(found) == len(want) > 0, stem
        for (name, box), detection in zip(found, want, strict=True):
            assert name == detection["class_name"]
            assert box == pytest.approx(detection["box"], abs=tolerance), stem


def _coco(out: Path, expected: dict) -> None:
    data = json.loads((out / "labels" / "coco.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    assert names == {1: "cat", 2: "dog", 3: "bird"}
    boxes: dict[str, list] = {}
    for image in data["images"]:
        stem = Path(image["file_name"]).stem
        json_file = expected[stem]
        assert (image["height"], image["width"]) == (json_file["height"], json_file["width"])
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        assert [a["score"] for a in anns] == [d["score"] for d in json_file["detections"]]
        boxes[stem] = []
        for a in anns:
            x, y, w, h = a["bbox"]
            boxes[stem].append((names[a["category_id"]], [x, y, x + w, y + h]))
    _check(boxes, expected, 2e-3)


def _voc(out: Path, expected: dict) -> None:
    folder = out / "labels" / "voc"
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted([*(f"{stem}.xml" for stem in STEMS), "classes.txt"])
    assert (folder / "classes.txt").read_text() == "cat\ndog\nbird\n"
    boxes = {}
    for stem in STEMS:
        root = ET.parse(folder / f"{stem}.xml").getroot()
        assert root.findtext("filename") == f"{stem}.jpg"
        assert root.findtext("size/height") == str(expected[stem]["height"])
        boxes[stem] = []
        for element in root.iter("object"):
            xmin, ymin, xmax, ymax = (
                float(element.findtext(f"bndbox/{tag}") or "nan")
                for tag in ("xmin", "ymin", "xmax", "ymax")
            )
            boxes[stem].append((element.findtext("name"), [xmin - 1, ymin - 1, xmax, ymax]))
    _check(boxes, expected, 5e-3 + 1e-3)


def _yolo(out: Path, expected: dict) -> None:
    folder = out / "labels" / "yolo"
    data = yaml.safe_load((folder / "data.yaml").read_text())
    assert data == {
        "path": str(folder.absolute()),
        "train": "images/train",
        "val": "images/train",
        "names": ["cat", "dog", "bird"],
    }
    boxes = {}
    for stem, source in zip(STEMS, SOURCES, strict=True):
        link = folder / "images" / "train" / source.name
        assert link.is_symlink() and link.resolve() == source.resolve()
        h, w = expected[stem]["height"], expected[stem]["width"]
        lines = (folder / "labels" / "train" / f"{stem}.txt").read_text().splitlines()
        boxes[stem] = []
        for line in lines:
            k, cx, cy, bw, bh = line.split()
            cx, bw, cy, bh = float(cx) * w, float(bw) * w, float(cy) * h, float(bh) * h
            box = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
            boxes[stem].append((data["names"][int(k)], box))
    _check(boxes, expected, 1e-6 * 640 + 1e-3)


def _labelstudio(out: Path, expected: dict) -> None:
    tasks = json.loads((out / "labels" / "labelstudio.json").read_text())
    boxes = {}
    for task, source in zip(tasks, SOURCES, strict=True):
        assert task["data"]["image"] == os.path.abspath(source)
        (prediction,) = task["predictions"]
        stem = source.stem
        scores = [d["score"] for d in expected[stem]["detections"]]
        assert [r["score"] for r in prediction["result"]] == scores
        assert prediction["score"] == pytest.approx(sum(scores) / len(scores), abs=1e-5)
        boxes[stem] = []
        for r in prediction["result"]:
            v, w, h = r["value"], r["original_width"], r["original_height"]
            assert (h, w) == (expected[stem]["height"], expected[stem]["width"])
            x, y = v["x"] * w / 100, v["y"] * h / 100
            box = [x, y, x + v["width"] * w / 100, y + v["height"] * h / 100]
            boxes[stem].append((v["rectanglelabels"][0], box))
    _check(boxes, expected, 1e-3 + 1e-3)


def test_every_format_equals_the_json(pet_file, tmp_path, capsys) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    out = tmp_path / "out"
    argv = ["detect", *SOURCES, broken, "--weights", pet_file, "--out", out]
    argv += ["--score-threshold", "0.1"]
    for fmt in LABEL_OUTPUTS:
        argv += ["--save-labels", fmt]
    status = main([str(a) for a in argv])
    printed = capsys.readouterr().out.splitlines()
    assert status == 1  # the broken image failed, and is left out of the labels
    assert printed[-4:] == [f"labels written to {out / name}" for name in LABEL_OUTPUTS.values()]
    assert (out / f"{STEMS[0]}.jpg").is_file()  # the labels are beside the drawn images
    expected = _expected(out)
    _coco(out, expected)
    _voc(out, expected)
    _yolo(out, expected)
    _labelstudio(out, expected)
    assert tuple(LABEL_OUTPUTS) == WRITE_FORMATS


def test_processes_gather_to_the_main_one(pet_model, tmp_path, monkeypatch) -> None:
    """Two ranks simulated in turn: rank 1 runs the second image and hands its records over;
    rank 0 runs the first and writes the labels of both, in input order."""
    sent: list = []
    main_summary = FolderRun(images=2, failed=0, detections=0, seconds_per_image=0.0)
    out = tmp_path / "out"
    out.mkdir()

    def as_rank(rank: int) -> FolderRun:
        context = DistributedContext(rank=rank, world_size=2)
        monkeypatch.setattr(folder_output, "current_context", lambda: context)
        monkeypatch.setattr(
            folder_output, "gather_to_main", lambda obj: sent.append(obj) if rank else [obj, *sent]
        )
        monkeypatch.setattr(folder_output, "broadcast_from_main", lambda obj: obj or main_summary)
        return detect_into_folder(
            pet_model, SOURCES, out, score_threshold=0.1, draw=False, save_labels=["coco"],
            progress=False,
        )  # fmt: skip

    assert as_rank(1) is main_summary  # what rank 0 would broadcast
    assert not (out / "labels" / "coco.json").exists()
    summary = as_rank(0)
    assert summary.images == 2 and summary.labels == (out / "labels" / "coco.json",)
    data = json.loads((out / "labels" / "coco.json").read_text())
    assert [image["file_name"] for image in data["images"]] == [p.name for p in SOURCES]
    _coco(out, _expected(out))


def test_unwritable_labels_are_one_line(pet_file, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "voc").write_text("a file in the way")
    argv = ["detect", SOURCES[0], "--weights", pet_file, "--out", out, "--save-labels", "voc"]
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"fasterrcnn: error: --save-labels: {out / 'labels' / 'voc'}: exists and is not a folder"
    )
    assert (out / "labels" / "voc").read_text() == "a file in the way"


def test_unknown_format_is_refused_before_running(pet_model, tmp_path) -> None:
    with pytest.raises(DatasetError, match="unknown label format 'csv'"):
        detect_into_folder(pet_model, SOURCES, tmp_path, save_labels=["csv"])
    assert not any(tmp_path.iterdir())
