"""``fasterrcnn eval --results`` of the same detections against the COCO slice, its Pascal VOC
conversion and its YOLO conversion (crowd regions removed first: YOLO cannot hold them):
the same 12 metrics, whichever format holds the ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.coco_slice import ANN_FILE, IMAGES

from fasterrcnn.cli import main
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.dataset_files import load_dataset
from fasterrcnn.dataset_tools.convert import convert_dataset


def _jittered_results(coco: CocoDataset, seed: int = 0) -> list[dict]:
    """Each ground-truth box moved by up to 15% of its size, with a random score."""
    rng = np.random.default_rng(seed)
    results = []
    for image in coco.images:
        for annotation in coco.annotations(image.id):
            x, y, w, h = annotation["bbox"]
            dx, dy, dw, dh = rng.uniform(-0.15, 0.15, 4) * [w, h, w, h]
            results.append({
                "image_id": image.id, "category_id": annotation["category_id"],
                "bbox": [x + dx, y + dy, w + dw, h + dh], "score": float(rng.random()),
            })  # fmt: skip
    return results


def _in_terms_of(results: list[dict], source: CocoDataset, target: CocoDataset) -> list[dict]:
    """``results`` with ``target``'s image ids (by file name) and category ids (by name)."""
    files = {image.id: image.file_name for image in source.images}
    image_id = {image.file_name: image.id for image in target.images}
    names = dict(zip(source.classes.category_ids, source.classes.names, strict=True))
    category_id = dict(zip(target.classes.names, target.classes.category_ids, strict=True))
    return [
        {**r, "image_id": image_id[files[r["image_id"]]],
         "category_id": category_id[names[r["category_id"]]]}
        for r in results
    ]  # fmt: skip


def _cli_metrics(tmp_path: Path, name: str, results: list[dict], *dataset: object) -> dict:
    """The metrics ``eval --results`` gives, its report written to ``tmp_path/<name>``."""
    results_file, metrics = tmp_path / f"{name}-results.json", tmp_path / f"{name}-metrics.json"
    results_file.write_text(json.dumps(results))
    argv = ["eval", *dataset, "--results", results_file, "--metrics", metrics,
            "--report", tmp_path / name, "--report-images", "3"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    return json.loads(metrics.read_text())


@pytest.mark.parametrize("crowd", [True, False])
def test_eval_of_the_same_results_in_three_formats(tmp_path: Path, crowd: bool) -> None:
    data = json.loads(ANN_FILE.read_text())
    if not crowd:
        data["annotations"] = [a for a in data["annotations"] if not a["iscrowd"]]
    for annotation in data["annotations"]:  # VOC and YOLO have box areas only
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(data))
    coco = load_dataset(annotations, IMAGES)
    results = _jittered_results(coco)
    expected = _cli_metrics(tmp_path, "coco", results, "--annotations", annotations)
    assert 0.3 < expected["AP"] < 0.95
    convert_dataset(coco, "voc", tmp_path / "voc")
    voc = load_dataset(tmp_path / "voc", IMAGES)
    # A VOC folder without --images: the labels alone (sizes from the XML) are enough.
    got = {"voc": _cli_metrics(tmp_path, "voc", _in_terms_of(results, coco, voc),
                               "--annotations", tmp_path / "voc")}  # fmt: skip
    # With --images, the results file is still the one evaluated; the report draws them.
    _cli_metrics(tmp_path, "voc-drawn", _in_terms_of(results, coco, voc), "--annotations",
                 tmp_path / "voc", "--images", IMAGES)  # fmt: skip
    if not crowd:
        convert_dataset(coco, "yolo", tmp_path / "yolo")
        yolo = load_dataset(tmp_path / "yolo" / "data.yaml", split="val")
        got["yolo"] = _cli_metrics(
            tmp_path, "yolo", _in_terms_of(results, coco, yolo),
            "--annotations", tmp_path / "yolo" / "data.yaml",
        )  # fmt: skip
    for name, metrics in got.items():
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"):
            assert metrics[key] == pytest.approx(expected[key], abs=1e-12), (name, key)
    # The same report: deploy thresholds, confusion matrix and errors, in any format.
    for name in (*got, "voc-drawn"):
        for file in ("thresholds.json", "confusion_matrix.json", "errors.json"):
            mine = json.loads((tmp_path / name / file).read_text())
            assert mine == json.loads((tmp_path / "coco" / file).read_text()), (name, file)
    assert list((tmp_path / "voc-drawn" / "worst").glob("01_*.jpg"))
    for name in ("coco", "voc"):  # no image folder: nothing to draw
        assert not (tmp_path / name / "worst").exists()
