"""Training: the schedule by hand, model preparation (fine-tuning, scratch), the loop's
checkpoints, resume and NaN stop, DDP against one process, and the CLI's bad input.

The loop runs a tiny configuration (ResNet-18 body, narrow FPN and heads, short side 128) on
the real COCO slice, so that an iteration takes a fraction of a second.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli_runner import run_cli
from helpers.seeded import DATA
from helpers.tiny_training import tiny_config

import fasterrcnn
from fasterrcnn.config import ClassTable
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.train_dataset import TrainingDataset
from fasterrcnn.training import loop as train_module
from fasterrcnn.training.loop import train
from fasterrcnn.training.options import (
    CHECKPOINT,
    CHECKPOINT_STATE,
    FINAL,
    TrainingError,
    TrainOptions,
)
from fasterrcnn.training.schedule import LRSchedule, make_schedule
from fasterrcnn.training.start import prepare_training_model, same_categories
from fasterrcnn.zoo import read_native, save_native
from fasterrcnn.zoo.presets import PRESETS

COCO = DATA / "coco"
ANNOTATIONS = COCO / "instances_val2017.json"
IMAGES = COCO / "val2017"
RES18 = "faster_rcnn_res18_coco_3x_800size"


@pytest.fixture(scope="module")
def coco() -> CocoDataset:
    return CocoDataset.load(ANNOTATIONS, IMAGES)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    config = tiny_config()
    save_native(path, fasterrcnn.Detector(config), config)
    return path


def _data(model: fasterrcnn.Detector, coco: CocoDataset) -> TrainingDataset:
    return TrainingDataset(coco, model.config.classes, model.config.input, (128, 112), 192)


# --- the schedule -----------------------------------------------------------------------------


def test_schedule_follows_the_linear_scaling_rule() -> None:
    assert make_schedule(16) == LRSchedule(0.02, 90_000, (60_000, 80_000), 500)
    assert make_schedule(2) == LRSchedule(0.0025, 720_000, (480_000, 640_000), 4000)
    assert make_schedule(32, "3x") == LRSchedule(0.04, 135_000, (105_000, 125_000), 250)
    assert make_schedule(2, max_iter=300, lr=0.01) == LRSchedule(0.01, 300, (200, 267), 60)


def test_learning_rate_by_hand() -> None:
    s = LRSchedule(base_lr=0.1, max_iter=100, steps=(60, 80), warmup_iters=10)
    assert s.lr_at(0) == pytest.approx(0.1 * 0.001)
    assert s.lr_at(5) == pytest.approx(0.1 * (0.001 * 0.5 + 0.5))
    assert s.lr_at(10) == pytest.approx(0.1)
    assert s.lr_at(59) == pytest.approx(0.1)
    assert s.lr_at(60) == pytest.approx(0.01)
    assert s.lr_at(99) == pytest.approx(0.001)
    with pytest.raises(ValueError, match="at least 1 iteration"):
        LRSchedule(0.1, 0, (), 0)


# --- the model a run starts from --------------------------------------------------------------


def test_same_categories_ignores_unused_slots(coco: CocoDataset) -> None:
    assert same_categories(PRESETS[RES18].config.classes, coco.classes)
    assert same_categories(
        PRESETS["torchvision_fasterrcnn_resnet50_fpn"].config.classes, coco.classes
    )
    three = ClassTable((1, 2, 3), ("person", "bicycle", "car"))
    assert not same_categories(PRESETS[RES18].config.classes, three)


def test_categories_of_the_model_s_names_keep_its_classes(
    coco: CocoDataset, tiny_weights: Path
) -> None:
    """A YOLO-style dataset (ids 0, 1, ... of its own) of exactly the model's class names keeps
    the model's class table and predictor; its boxes get the classes of their names."""
    model_classes = read_native(tiny_weights).config.classes
    names = list(reversed(model_classes.names))  # other ids and another order
    yolo_like = ClassTable(tuple(range(len(names))), tuple(names))
    assert same_categories(model_classes, yolo_like)
    assert not same_categories(model_classes, ClassTable((0,), (names[0],)))
    start = prepare_training_model(None, yolo_like, weights=tiny_weights)
    assert start.model.config.classes == model_classes
    assert not any("class table" in note for note in start.notes)
    raw = coco.coco_dict()
    id_of = {c["name"]: i for i, c in enumerate(reversed(raw["categories"]))}
    for annotation in raw["annotations"]:
        name = next(c["name"] for c in raw["categories"] if c["id"] == annotation["category_id"])
        annotation["category_id"] = id_of[name]
    raw["categories"] = [{"id": i, "name": n} for n, i in id_of.items()]
    renumbered = CocoDataset.load(raw, IMAGES)
    for dataset in (coco, renumbered):
        data = TrainingDataset(dataset, model_classes, start.model.config.input, (128,), 192)
        assert data.counts.outside_classes_dropped == 0
    expected = _data(start.model, coco)
    got = TrainingDataset(renumbered, model_classes, start.model.config.input, (128, 112), 192)
    for i in range(len(expected)):
        np.testing.assert_array_equal(got.boxes(i)[1], expected.boxes(i)[1])


def test_fine_tuning_reinitializes_only_the_box_predictor(tiny_weights: Path) -> None:
    three = ClassTable((1, 3, 62), ("person", "car", "chair"))
    start = prepare_training_model(None, three, weights=tiny_weights)
    model, source = start.model, read_native(tiny_weights)
    assert model.config.classes == three
    assert model.config.box_head.num_classes == 3
    assert model.roi_heads.predictor.cls_score.weight.shape == (4, 64)
    assert model.roi_heads.predictor.bbox_pred.weight.shape == (12, 64)  # no background deltas
    fresh = {k for k, v in model.state_dict().items() if not torch.equal(v, source.state_dict[k])}
    assert fresh == {
        "roi_heads.predictor.cls_score.weight",
        "roi_heads.predictor.cls_score.bias",
        "roi_heads.predictor.bbox_pred.weight",
        "roi_heads.predictor.bbox_pred.bias",
    }
    assert any("re-initialized 4 tensors" in note for note in start.notes)
    assert any("class table comes from the annotation file" in note for note in start.notes)


def test_scratch_body_trains_with_group_norm(coco: CocoDataset) -> None:
    start = prepare_training_model(RES18, coco.classes, short_sides=(320,), max_side=512)
    assert start.model.config.body.norm == "gn"
    assert start.model.config.body.freeze_at == 0
    assert isinstance(start.model.backbone.body.bn1, torch.nn.GroupNorm)
    assert all(p.requires_grad for p in start.model.parameters())
    assert (start.model.config.input.short_side, start.model.config.input.max_side) == (320, 512)
    assert any("group norm" in note for note in start.notes)


def test_imagenet_body_keeps_frozen_batch_norm(coco: CocoDataset, tmp_path: Path) -> None:
    torch.manual_seed(1)
    body = fasterrcnn.Detector(PRESETS[RES18].config).backbone.body
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v for k, v in body.state_dict().items()
    }
    classifier = {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save({**state, **classifier}, tmp_path / "resnet18.pth")
    start = prepare_training_model(RES18, coco.classes, body_weights=tmp_path / "resnet18.pth")
    assert start.model.config.body.norm == "frozen_bn"
    loaded = start.model.backbone.body.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert not start.model.backbone.body.conv1.weight.requires_grad  # freeze_at 2
    assert any("body initialised from" in note for note in start.notes)
    assert not any("group norm" in note for note in start.notes)


# --- the loop: checkpoints, NaN, resume -------------------------------------------------------


def _options(output: Path, **changes) -> TrainOptions:
    base = TrainOptions(
        output=output, batch_size=2, max_iter=4, lr=0.01, short_sides=(128, 112), max_side=192,
        workers=0, log_period=1, checkpoint_period=2, seed=3,
    )  # fmt: skip
    return replace(base, **changes)


def _losses(folder: Path) -> list[tuple[int, float]]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [(r["iteration"], r["total"]) for r in map(json.loads, lines) if "total" in r]


@pytest.mark.usefixtures("one_thread")  # the same kernels in every run
def test_nan_stops_the_run_and_resume_repeats_the_uninterrupted_run(
    tiny_weights: Path, coco: CocoDataset, tmp_path: Path, monkeypatch
) -> None:
    whole = read_native(tiny_weights)
    model = fasterrcnn.Detector(whole.config)
    model.load_state_dict(whole.state_dict)
    train(model.train(), _data(model, coco), _options(tmp_path / "whole"))
    reference = _losses(tmp_path / "whole")
    assert [i for i, _ in reference] == [1, 2, 3, 4]
    final = read_native(tmp_path / "whole" / FINAL).state_dict

    # The same run, whose third iteration's loss is NaN: it stops with the checkpoint of
    # iteration 2 kept.
    model = fasterrcnn.Detector(whole.config)
    model.load_state_dict(whole.state_dict)
    original = train_module._LossModule.forward
    calls = {"n": 0}

    def poisoned(self, *args):
        losses = original(self, *args)
        calls["n"] += 1
        if calls["n"] == 3:
            losses["roi_box"] = losses["roi_box"] * math.nan
        return losses

    monkeypatch.setattr(train_module._LossModule, "forward", poisoned)
    cut = tmp_path / "cut"
    with pytest.raises(TrainingError) as stop:
        train(model.train(), _data(model, coco), _options(cut))
    message = str(stop.value)
    assert "non-finite loss at iteration 3" in message and "roi_box nan" in message
    assert f"the last good checkpoint is {cut / CHECKPOINT} (iteration 2)" in message
    assert "\n" not in message
    assert not (cut / FINAL).exists()
    assert read_native(cut / CHECKPOINT).metadata["iteration"] == "2"

    # Resumed (without the poison): iterations 3 and 4 as in the uninterrupted run.
    monkeypatch.setattr(train_module._LossModule, "forward", original)
    model = fasterrcnn.Detector(whole.config)
    train(model.train(), _data(model, coco), _options(cut, resume=True))
    assert _losses(cut) == reference
    resumed = read_native(cut / FINAL).state_dict
    assert all(torch.equal(resumed[k], final[k]) for k in final)


def test_resume_refuses_another_run(tiny_weights: Path, coco: CocoDataset, tmp_path: Path) -> None:
    whole = read_native(tiny_weights)
    model = fasterrcnn.Detector(whole.config)
    with pytest.raises(TrainingError, match="no checkpoint in"):
        train(model, _data(model, coco), _options(tmp_path, resume=True))
    train(model.train(), _data(model, coco), _options(tmp_path, max_iter=2))
    with pytest.raises(TrainingError, match="already complete"):
        train(model, _data(model, coco), _options(tmp_path, max_iter=2, resume=True))
    with pytest.raises(TrainingError, match="batch 2 x 1 process"):
        train(model, _data(model, coco), _options(tmp_path, batch_size=1, resume=True))
    other = fasterrcnn.Detector(
        replace(whole.config, box_head=replace(whole.config.box_head, fc_dim=32))
    )
    with pytest.raises(TrainingError, match="another model configuration"):
        train(other, _data(other, coco), _options(tmp_path, resume=True))
    state = torch.load(tmp_path / CHECKPOINT_STATE, weights_only=True)
    assert state["iteration"] == 2


# --- many processes and the command line ------------------------------------------------------


def _train_args(weights: Path, output: Path, batch: int) -> list[object]:
    return [
        "train", "--images", IMAGES, "--annotations", ANNOTATIONS, "--weights", weights,
        "--output", output, "--batch-size", batch, "--max-iter", 2, "--lr", 0.01,
        "--short-side", 128, 112, "--max-side", 192, "--workers", 0, "--log-period", 1,
        "--seed", 5,
    ]  # fmt: skip


@pytest.mark.slow  # two processes under torchrun
def test_two_processes_make_the_update_of_one_with_the_double_batch(
    tiny_weights: Path, tmp_path: Path
) -> None:
    """The slice's landscape images all pad to 128 x 192 at short side 128, so every image
    sees the same input whether it shares its batch or not."""
    data = json.loads(ANNOTATIONS.read_text())
    wide = {image["id"] for image in data["images"] if image["width"] > image["height"]}
    data["images"] = [image for image in data["images"] if image["id"] in wide]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in wide]
    (tmp_path / "wide.json").write_text(json.dumps(data))

    def args(output: str, batch: int) -> list[object]:
        base = _train_args(tiny_weights, tmp_path / output, batch)
        base[base.index(ANNOTATIONS)] = tmp_path / "wide.json"
        base[base.index("--short-side") + 2] = 128
        base[base.index("--max-iter") + 1] = 1  # one update, from the same weights
        return base

    one = run_cli(args("one", 2), tmp_path)
    assert one.returncode == 0, one.stderr
    two = run_cli(args("two", 1), tmp_path, processes=2)
    assert two.returncode == 0, two.stderr
    assert "2 process(es)" in two.stderr
    half = run_cli(args("half", 1), tmp_path)  # one process, its first image only
    assert half.returncode == 0, half.stderr

    start = read_native(tiny_weights).state_dict

    def update(run: str) -> dict[str, torch.Tensor]:
        final = read_native(tmp_path / run / FINAL).state_dict
        return {k: (v - start[k]).double() for k, v in final.items() if v.is_floating_point()}

    one_update, two_update, half_update = update("one"), update("two"), update("half")

    def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        """Relative L2 distance of two whole updates. Batched and single-image kernels round
        differently, and a proposal that ties may then fall either way: so not bitwise."""
        diff = sum(((a[k] - b[k]) ** 2).sum() for k in a)
        return math.sqrt(float(diff) / float(sum((a[k] ** 2).sum() for k in a)))

    assert sum(bool(v.abs().max() > 0) for v in one_update.values()) > 50
    print(f"relative distance of the updates: 2 processes {distance(two_update, one_update):.1e}, "
          f"half the batch {distance(half_update, one_update):.1e}")  # fmt: skip
    assert distance(two_update, one_update) <= 2e-3
    assert distance(half_update, one_update) > 0.1  # what the tolerance tells apart
    losses_one, losses_two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert [loss for _, loss in losses_one] == pytest.approx(
        [loss for _, loss in losses_two], rel=1e-5
    )


def test_cli_trains_and_writes_a_native_model(tiny_weights: Path, tmp_path: Path) -> None:
    run = run_cli(
        [*_train_args(tiny_weights, tmp_path / "run", 2), "--checkpoint-period", 1], tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert "iter 2/2" in run.stderr and "it/s" in run.stderr and "ETA" in run.stderr
    assert "10 kept (2 of them background-only), 0 dropped without a usable box" in run.stderr
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {FINAL, CHECKPOINT, CHECKPOINT_STATE, "metrics.jsonl"} <= files
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["iteration"] for r in records] == [1, 2]
    assert set(records[0]) >= {
        "lr",
        "total",
        "rpn_objectness",
        "rpn_box",
        "roi_classification",
        "roi_box",
    }
    model = fasterrcnn.create_model(weights=tmp_path / "run" / FINAL)
    assert model.config.input.short_side == 128


def _one_line_error(run: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("fasterrcnn: error: "), run.stderr
    assert fragment in lines[-1], run.stderr
    assert "Traceback" not in run.stderr


def test_cli_bad_input(tiny_weights: Path, tmp_path: Path) -> None:
    data = json.loads(ANNOTATIONS.read_text())
    crowd = {**data, "annotations": [{**a, "iscrowd": 1} for a in data["annotations"]]}
    (tmp_path / "crowd.json").write_text(json.dumps(crowd))
    args = _train_args(tiny_weights, tmp_path / "out", 2)
    run = run_cli([*args[:4], tmp_path / "crowd.json", *args[5:]], tmp_path)
    _one_line_error(run, "no image with a usable box")

    extra = {
        **data,
        "images": [*data["images"], {**data["images"][0], "id": 99, "file_name": "gone.jpg"}],
    }
    (tmp_path / "missing.json").write_text(json.dumps(extra))
    run = run_cli([*args[:4], tmp_path / "missing.json", *args[5:]], tmp_path)
    _one_line_error(run, "1 of the 11 training images are not in")

    (tmp_path / "file").write_text("")
    run = run_cli(_train_args(tiny_weights, tmp_path / "file" / "out", 2), tmp_path)
    _one_line_error(run, "output folder")

    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "junk.pth")
    junk = _train_args(tmp_path / "junk.pth", tmp_path / "out", 2)
    run = run_cli([*junk, "--model", RES18], tmp_path)
    _one_line_error(run, "junk.pth")

    run = run_cli([*args, "--resume"], tmp_path)
    _one_line_error(run, "--resume: no checkpoint in")
