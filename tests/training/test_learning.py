"""A real learning check (slow: ``pytest -m slow``): the ResNet-18 FPN preset trained from
scratch by ``fasterrcnn train`` on the 8 annotated images of the COCO slice (``--drop-empty``
leaves its 2 background images out), at short side 320, reaches AP50 >= 0.5 on them; fine-tuned from there to three of COCO's
categories, given as a COCO file, a YOLO dataset or a Pascal VOC folder (both written by
``fasterrcnn data convert``), it learns them (AP50 printed) and its ``detect`` output names
the dataset's classes. The fine-tuning runs keep the images without any of the three as
background images, evaluate on their dataset twice and keep the best evaluation's weights.
The from-scratch model is trained once and shared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.cli_runner import run_cli
from helpers.seeded import DATA

COCO = DATA / "coco"
ANNOTATIONS = COCO / "instances_val2017.json"
IMAGES = COCO / "val2017"
THREE = {1: "person", 2: "bicycle", 72: "tv"}
SCRATCH_ITERATIONS = 500
FINE_TUNING_ITERATIONS = 150
FINE_TUNED_AP50 = 0.5  # measured: 0.71 (YOLO) and 0.79 (VOC)
TWO_THREADS = {"OMP_NUM_THREADS": "2"}  # the CI machine's two cores, one run at a time

pytestmark = pytest.mark.slow


def _coco(annotations: Path) -> list[object]:
    return ["--images", IMAGES, "--annotations", annotations]


def _train(output: Path, dataset: list[object], iterations: int, *extra: object) -> list[object]:
    return [
        "train", *dataset, "--output", output,
        "--model", "faster_rcnn_res18_coco_3x_800size", "--short-side", 320,
        "--max-side", 512, "--max-iter", iterations, "--lr", 0.02, "--clip-grad", 5,
        "--precision", "bf16", "--workers", 1, "--log-period", 50, *extra,
    ]  # fmt: skip


@dataclass(frozen=True)
class Scratch:
    model: Path
    three: Path  # the slice's instances file cut down to THREE's categories
    work: Path


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    work = tmp_path_factory.mktemp("learning")
    run = run_cli(
        _train(work / "scratch", _coco(ANNOTATIONS), SCRATCH_ITERATIONS, "--drop-empty"),
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


def _ap(work: Path, weights: Path, *dataset: object) -> dict[str, float]:
    metrics = work / f"metrics-{weights.parent.name}.json"
    evaluation = run_cli(
        ["eval", *dataset, "--metrics", metrics, "--weights", weights], work, env=TWO_THREADS
    )
    assert evaluation.returncode == 0, evaluation.stderr
    return json.loads(metrics.read_text())


def _detected_names(work: Path, weights: Path) -> set[str]:
    out = work / f"detections-{weights.parent.name}"
    detect = run_cli(
        ["detect", IMAGES, "--weights", weights, "--out", out, "--no-draw",
         "--score-threshold", 0.3],
        work,
    )  # fmt: skip
    assert detect.returncode == 0, detect.stderr
    names = set()
    for path in out.glob("*.json"):
        names |= {d["class_name"] for d in json.loads(path.read_text())["detections"]}
    return names


def test_training_from_scratch_learns(scratch: Scratch) -> None:
    stats = _ap(scratch.work, scratch.model, *_coco(ANNOTATIONS))
    print(f"from scratch, {SCRATCH_ITERATIONS} iterations: AP {stats['AP']:.3f}, "
          f"AP50 {stats['AP50']:.3f}")  # fmt: skip
    assert stats["AP50"] >= 0.5


def test_fine_tuning_to_three_categories(scratch: Scratch) -> None:
    tuned = scratch.work / "tuned"
    run = run_cli(_train(tuned, _coco(scratch.three), 60, "--weights", scratch.model), scratch.work)
    assert run.returncode == 0, run.stderr
    assert "class table comes from the annotation file" in run.stderr
    assert "re-initialized 4 tensors" in run.stderr
    names = _detected_names(scratch.work, tuned / "model_final.safetensors")
    print(f"fine-tuned detections name {sorted(names)}")
    assert names and names <= set(THREE.values())


@pytest.mark.parametrize("target", ["yolo", "voc"])
def test_fine_tuning_on_a_yolo_or_voc_dataset(scratch: Scratch, target: str) -> None:
    converted = scratch.work / target
    convert = run_cli(
        ["data", "convert", "--annotations", scratch.three, "--images", IMAGES, "--to",
         target, converted],
        scratch.work,
    )  # fmt: skip
    assert convert.returncode == 0, convert.stderr

    # YOLO: the data.yaml names its images (train split for training, val for eval); VOC: a
    # folder of XML files and the image folder.
    def dataset_options(prefix: str) -> list[object]:
        if target == "yolo":
            return [f"--{prefix}annotations", converted / "data.yaml"]
        return [f"--{prefix}annotations", converted, f"--{prefix}images", IMAGES]

    dataset = dataset_options("")
    evaluating = [*dataset_options("eval-"), "--eval-period", FINE_TUNING_ITERATIONS // 2]
    tuned = scratch.work / f"tuned-{target}"
    run = run_cli(
        _train(tuned, dataset, FINE_TUNING_ITERATIONS, "--weights", scratch.model, *evaluating),
        scratch.work,
        env=TWO_THREADS,
    )
    assert run.returncode == 0, run.stderr
    assert "class table comes from the annotation file" in run.stderr
    assert "4 of them background-only" in run.stderr  # images without any of the three
    assert (tuned / "model_best.safetensors").is_file()
    final = tuned / "model_final.safetensors"
    stats = _ap(scratch.work, final, *dataset)
    print(f"fine-tuned on the {target} dataset, {FINE_TUNING_ITERATIONS} iterations: "
          f"AP {stats['AP']:.3f}, AP50 {stats['AP50']:.3f}")  # fmt: skip
    assert stats["AP50"] >= FINE_TUNED_AP50
    names = _detected_names(scratch.work, final)
    print(f"its detections name {sorted(names)}")
    assert names and names <= set(THREE.values())
