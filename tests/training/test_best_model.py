"""Evaluations during a run: validation losses in metrics.jsonl that change nothing,
``model_best.safetensors`` with the weights of the best evaluation, patience, and their
resume; the command line's options for them.

The COCO metrics are scripted (a stand-in returns chosen values and keeps the weights it was
called with); the validation losses are real. The model is the tiny one of test_train.py, on
one thread (the same kernels in every run, and fast on a busy machine).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers.tiny_training import ANNOTATIONS, IMAGES, tiny_config

import fasterrcnn
from fasterrcnn.cli import main
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.train_dataset import TrainingDataset
from fasterrcnn.evaluation.coco_metrics import STAT_NAMES
from fasterrcnn.evaluation.dataset_run import EvalSet
from fasterrcnn.training import loop
from fasterrcnn.training.loop import train
from fasterrcnn.training.options import (
    BEST,
    CHECKPOINT_STATE,
    FINAL,
    TrainingError,
    TrainOptions,
)
from fasterrcnn.training.validation import validation_losses, validation_samples
from fasterrcnn.zoo import read_native, save_native

LOSSES = ("rpn_objectness", "rpn_box", "roi_classification", "roi_box")
VAL_KEYS = {f"val_loss_{name}" for name in (*LOSSES, "total")}


@pytest.fixture(scope="module")
def coco() -> CocoDataset:
    return CocoDataset.load(ANNOTATIONS, IMAGES)


@pytest.fixture(scope="module")
def start() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return fasterrcnn.Detector(tiny_config()).state_dict()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """The messages of the ``fasterrcnn`` logger while the test runs (whatever handlers and
    propagation the command line left it with)."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("fasterrcnn")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def _model(start: dict[str, torch.Tensor]) -> fasterrcnn.Detector:
    model = fasterrcnn.Detector(tiny_config())
    model.load_state_dict(start)
    return model.train()


def _data(model: fasterrcnn.Detector, coco: CocoDataset) -> TrainingDataset:
    return TrainingDataset(coco, model.config.classes, model.config.input, (128, 112), 192)


def _options(output: Path, **changes) -> TrainOptions:
    base = TrainOptions(
        output=output, batch_size=2, max_iter=4, lr=0.01, short_sides=(128, 112), max_side=192,
        workers=0, log_period=1, checkpoint_period=2, eval_period=1, seed=3,
    )  # fmt: skip
    return replace(base, **changes)


class Scripted:
    """A stand-in for the COCO evaluation: each call returns the next of ``values`` as every
    stat (None: no metrics; an exception is raised) and keeps the weights it saw."""

    def __init__(self, values: list) -> None:
        self.values = list(values)
        self.weights: list[dict[str, torch.Tensor]] = []

    def __call__(self, model: fasterrcnn.Detector, evaluation: EvalSet) -> dict | None:
        value = self.values[len(self.weights)]
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        if isinstance(value, Exception):
            raise value
        return None if value is None else dict.fromkeys(STAT_NAMES, value)


def _records(folder: Path) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "val_loss_total" in r]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_best_model_holds_the_weights_of_the_best_evaluation(
    start, coco, tmp_path, monkeypatch, log_lines
) -> None:
    scripted = Scripted([0.3, None, 0.3])  # the 0.3 of iteration 3 is no improvement
    monkeypatch.setattr(loop, "coco_metrics", scripted)
    model = _model(start)
    options = _options(tmp_path, max_iter=3)
    result = train(model, _data(model, coco), options, evaluation=EvalSet(coco, [0, 3]))
    assert result.best == (1, 0.3) and not result.stopped_early and result.iterations == 3
    best = read_native(tmp_path / BEST)
    assert _same(best.state_dict, scripted.weights[0])
    assert not _same(best.state_dict, scripted.weights[2])
    assert best.metadata["iteration"] == "1" and best.metadata["best_metric"] == "AP"
    assert float(best.metadata["best_value"]) == 0.3
    assert "iter 1: new best AP 0.3000, saved " + str(tmp_path / BEST) in log_lines
    state = torch.load(tmp_path / CHECKPOINT_STATE, weights_only=True)
    assert state["best"] == {"metric": "AP", "value": 0.3, "iteration": 1, "misses": 2}
    # Every evaluation's record has its validation losses; the one without metrics only them.
    records = _records(tmp_path)
    assert [r["iteration"] for r in records] == [1, 2, 3]
    assert [r.get("eval/AP") for r in records] == [0.3, None, 0.3]
    for record in records:
        assert record["val_loss_total"] == pytest.approx(
            sum(record[f"val_loss_{n}"] for n in LOSSES)
        )


def test_patience_stops_after_n_plus_one_evaluations(
    start, coco, tmp_path, monkeypatch, log_lines
) -> None:
    scripted = Scripted([0.2] * 10)
    monkeypatch.setattr(loop, "coco_metrics", scripted)
    model = _model(start)
    options = _options(tmp_path, max_iter=10, patience=2, checkpoint_period=5)
    result = train(model, _data(model, coco), options, evaluation=EvalSet(coco, [0]))
    assert len(scripted.weights) == 3 and len(_records(tmp_path)) == 3
    assert result.iterations == 3 and result.stopped_early and result.best == (1, 0.2)
    assert (
        "iter 3: stopping early: 2 evaluations in a row did not improve AP (best 0.2000 at "
        "iteration 1)" in log_lines
    )
    assert _same(read_native(tmp_path / FINAL).state_dict, scripted.weights[2])
    assert torch.load(tmp_path / CHECKPOINT_STATE, weights_only=True)["iteration"] == 3
    with pytest.raises(TrainingError, match="already stopped early after 2 evaluation"):
        train(
            model, _data(model, coco), replace(options, resume=True), evaluation=EvalSet(coco, [0])
        )


def test_resume_keeps_the_best_and_the_patience(start, coco, tmp_path, monkeypatch) -> None:
    evaluation = EvalSet(coco, [0])
    options = _options(tmp_path, max_iter=4, patience=2)
    # Interrupted at iteration 3: the checkpoint of iteration 2 knows the best (0.3 at
    # iteration 1) and one evaluation without improvement.
    monkeypatch.setattr(loop, "coco_metrics", Scripted([0.3, 0.1, RuntimeError("stop")]))
    model = _model(start)
    with pytest.raises(RuntimeError, match="stop"):
        train(model, _data(model, coco), options, evaluation=evaluation)
    state = torch.load(tmp_path / CHECKPOINT_STATE, weights_only=True)
    assert state["best"] == {"metric": "AP", "value": 0.3, "iteration": 1, "misses": 1}
    # One more evaluation without improvement makes two: the run stops at iteration 3.
    monkeypatch.setattr(loop, "coco_metrics", Scripted([0.1]))
    model = _model(start)
    result = train(model, _data(model, coco), replace(options, resume=True), evaluation=evaluation)
    assert (result.iterations, result.stopped_early, result.best) == (3, True, (1, 0.3))
    assert read_native(tmp_path / BEST).metadata["iteration"] == "1"
    # A checkpoint of an earlier version, without the tracker's state, resumes with none.
    state = torch.load(tmp_path / CHECKPOINT_STATE, weights_only=True)
    del state["best"]
    torch.save(state, tmp_path / CHECKPOINT_STATE)
    monkeypatch.setattr(loop, "coco_metrics", Scripted([0.05]))
    result = train(model, _data(model, coco), replace(options, resume=True), evaluation=evaluation)
    assert (result.iterations, result.stopped_early, result.best) == (4, False, (4, 0.05))
    assert read_native(tmp_path / BEST).metadata["iteration"] == "4"


def test_validation_losses_change_nothing(start, coco, tmp_path, monkeypatch) -> None:
    # Batch norm in train mode: its running statistics stay as they are.
    config = tiny_config()
    config = replace(config, body=replace(config.body, norm="bn"))
    torch.manual_seed(1)
    model = fasterrcnn.Detector(config).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    options = _options(tmp_path)
    samples = validation_samples(model, EvalSet(coco, [0, 1, 3]), options)
    assert samples.indices == [0, 1, 3]  # image 3 (58636) is background-only
    losses = validation_losses(model, samples, options)
    assert set(losses) == VAL_KEYS and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert _same(model.state_dict(), before)
    assert all(m.training for m in model.modules()) and all(
        p.grad is None for p in model.parameters()
    )
    # The mean over the images, the same at every call.
    alone = [validation_losses(model, replace(samples, indices=[i]), options) for i in (0, 1, 3)]
    for key in VAL_KEYS:
        assert losses[key] == pytest.approx(sum(a[key] for a in alone) / 3, rel=1e-5)
    assert validation_losses(model, samples, options) == losses

    # In a run: evaluating after iteration 1 does not change iteration 2.
    monkeypatch.setattr(loop, "coco_metrics", Scripted([None, None]))
    runs = {}
    for name, evaluation in (("plain", None), ("evaluated", EvalSet(coco, [3]))):
        model = _model(start)
        options = _options(tmp_path / name, max_iter=2)
        train(model, _data(model, coco), options, evaluation=evaluation)
        runs[name] = read_native(tmp_path / name / FINAL).state_dict
    assert _same(runs["plain"], runs["evaluated"])
    assert [r["iteration"] for r in _records(tmp_path / "evaluated")] == [1, 2]


def _args(weights: Path, output: Path, *extra: object) -> list[str]:
    args = [
        "train", "--images", IMAGES, "--annotations", ANNOTATIONS, "--weights", weights,
        "--output", output, "--batch-size", 2, "--max-iter", 2, "--lr", 0.01,
        "--short-side", 128, "--max-side", 192, "--workers", 0, "--log-period", 1, *extra,
    ]  # fmt: skip
    return [str(a) for a in args]


def test_cli_options(start, tmp_path, capsys) -> None:
    weights = tmp_path / "tiny.safetensors"
    save_native(weights, start, tiny_config())
    needs = "--best-metric and --patience need an evaluation set, --eval-annotations"
    for extra in (["--patience", 2], ["--best-metric", "AP50"]):
        assert main(_args(weights, tmp_path / "bad", *extra)) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"fasterrcnn: error: {needs}"]
    for extra, problem in [
        (["--repeat-threshold", 0], "--repeat-threshold: must be a number > 0, not 0"),
        (["--best-metric", "mAP"], "--best-metric: invalid choice: 'mAP'"),
        (["--patience", 0], "--patience"),
    ]:
        with pytest.raises(SystemExit):
            main(_args(weights, tmp_path / "bad", *extra))
        assert problem in capsys.readouterr().err

    raw = json.loads(ANNOTATIONS.read_text())
    one = {**raw, "images": raw["images"][:1]}
    one["annotations"] = [a for a in raw["annotations"] if a["image_id"] == one["images"][0]["id"]]
    (tmp_path / "one.json").write_text(json.dumps(one))
    run = tmp_path / "run"
    extra = [
        "--drop-empty", "--use-difficult", "--repeat-threshold", 0.5, "--eval-images", IMAGES,
        "--eval-annotations", tmp_path / "one.json", "--eval-period", 1, "--best-metric",
        "AR100", "--patience", 5,
    ]  # fmt: skip
    status = main(_args(weights, run, *extra))
    err = capsys.readouterr().err
    assert status == 0, err
    # The two crowd boxes are trained on; the two images without a box are dropped.
    assert "training images: 8 kept (0 of them background-only), 2 dropped without" in err
    assert "boxes: 90 kept" in err and "dropped: 0 crowd" in err
    assert "repeat-factor sampling (threshold 0.5)" in err
    records = _records(run)
    assert [r["iteration"] for r in records] == [1, 2] and all("eval/AR100" in r for r in records)
    state = torch.load(run / CHECKPOINT_STATE, weights_only=True)
    assert (state["drop_empty"], state["use_crowd"], state["repeat_threshold"]) == (True, True, 0.5)
    assert state["best"]["metric"] == "AR100"
