"""A real learning check (slow: ``pytest -m slow``): the ResNet-18 FPN preset trained from
scratch by ``fasterrcnn train`` on the 8 annotated images of the COCO slice, at short side 320,
reaches AP50 >= 0.5 on them; fine-tuned to three of COCO's categories, its ``detect`` output
names those three.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.cli_runner import run_cli
from helpers.seeded import DATA

COCO = DATA / "coco"
ANNOTATIONS = COCO / "instances_val2017.json"
IMAGES = COCO / "val2017"
THREE = {1: "person", 2: "bicycle", 72: "tv"}
SCRATCH_ITERATIONS = 500

pytestmark = pytest.mark.slow


def _train(output: Path, annotations: Path, iterations: int, *extra: object) -> list[object]:
    return [
        "train", "--images", IMAGES, "--annotations", annotations, "--output", output,
        "--model", "faster_rcnn_res18_coco_3x_800size", "--short-side", 320,
        "--max-side", 512, "--max-iter", iterations, "--lr", 0.02, "--clip-grad", 5,
        "--precision", "bf16", "--workers", 1, "--log-period", 50, *extra,
    ]  # fmt: skip


def test_training_from_scratch_learns_and_fine_tunes(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    run = run_cli(_train(scratch, ANNOTATIONS, SCRATCH_ITERATIONS), tmp_path, timeout=1800)
    assert run.returncode == 0, run.stderr
    assert "group norm" in run.stderr

    metrics = tmp_path / "metrics.json"
    evaluation = run_cli(
        ["eval", "--images", IMAGES, "--annotations", ANNOTATIONS, "--metrics", metrics,
         "--weights", scratch / "model_final.safetensors"],
        tmp_path,
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr
    stats = json.loads(metrics.read_text())
    print(f"from scratch, {SCRATCH_ITERATIONS} iterations: AP {stats['AP']:.3f}, "
          f"AP50 {stats['AP50']:.3f}")  # fmt: skip
    assert stats["AP50"] >= 0.5

    data = json.loads(ANNOTATIONS.read_text())
    data["categories"] = [c for c in data["categories"] if c["id"] in THREE]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] in THREE]
    subset = tmp_path / "three.json"
    subset.write_text(json.dumps(data))
    tuned = tmp_path / "tuned"
    run = run_cli(
        _train(tuned, subset, 60, "--weights", scratch / "model_final.safetensors"), tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert "class table comes from the annotation file" in run.stderr
    assert "re-initialized 4 tensors" in run.stderr

    out = tmp_path / "detections"
    detect = run_cli(
        ["detect", IMAGES, "--weights", tuned / "model_final.safetensors", "--out", out,
         "--no-draw", "--score-threshold", 0.3],
        tmp_path,
    )  # fmt: skip
    assert detect.returncode == 0, detect.stderr
    names = set()
    for path in out.glob("*.json"):
        names |= {d["class_name"] for d in json.loads(path.read_text())["detections"]}
    print(f"fine-tuned detections name {sorted(names)}")
    assert names and names <= set(THREE.values())
