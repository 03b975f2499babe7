"""The model the slow tests share: the ResNet-18 FPN preset trained from scratch by
``fasterrcnn train`` on the 8 annotated images of the COCO slice (``--drop-empty`` leaves its
2 background images out) at short side 320, once per session (``scratch`` in
tests/training/conftest.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from helpers.cli_runner import run_cli
from helpers.seeded import DATA

COCO = DATA / "coco"
ANNOTATIONS = COCO / "instances_val2017.json"
IMAGES = COCO / "val2017"
THREE = {1: "person", 2: "bicycle", 72: "tv"}
SCRATCH_ITERATIONS = 500
SHORT_SIDE, MAX_SIDE = 320, 512  # the training scale (train_args' --short-side, --max-side)
TWO_THREADS = {"OMP_NUM_THREADS": "2"}  # the CI machine's two cores, one run at a time


@dataclass(frozen=True)
class Scratch:
    model: Path
    three: Path  # the slice's instances file cut down to THREE's categories
    work: Path


def coco_options(annotations: Path) -> list[object]:
    return ["--images", IMAGES, "--annotations", annotations]


def train_args(
    output: Path, dataset: list[object], iterations: int, *extra: object
) -> list[object]:
    return [
        "train", *dataset, "--output", output,
        "--model", "faster_rcnn_res18_coco_3x_800size", "--short-side", SHORT_SIDE,
        "--max-side", MAX_SIDE, "--max-iter", iterations, "--lr", 0.02, "--clip-grad", 5,
        "--precision", "bf16", "--workers", 1, "--log-period", 50, *extra,
    ]  # fmt: skip


def train_scratch(work: Path) -> Scratch:
    """Train the shared model in ``work`` (about 10 minutes on 2 cores)."""
    run = run_cli(
        train_args(work / "scratch", coco_options(ANNOTATIONS), SCRATCH_ITERATIONS, "--drop-empty"),
        work,
        timeout=1800,
        env=TWO_THREADS,
    )
    assert run.returncode == 0, run.stderr
    assert "group norm" in run.stderr
    assert "training images: 8 kept (0 of them background-only), 2 dropped" in run.stderr
    data = json.loads(ANNOTATIONS.read_text())
    data["categories"] = [c for c in data["categories"] if c["id"] in THREE]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] in THREE]
    three = work / "three.json"
    three.write_text(json.dumps(data))
    return Scratch(work / "scratch" / "model_final.safetensors", three, work)
