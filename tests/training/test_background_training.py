"""Background-only images in training: the network's losses for an image without any box
(every anchor and RoI negative, no box loss), alone and beside an image with boxes, and a
short run whose batches hold background images under repeat-factor sampling (on one thread,
fast on a busy machine)."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import pytest
import torch
from helpers.tiny_training import ANNOTATIONS, IMAGES, tiny_config

import fasterrcnn
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.group_sampler import GroupedBatchSampler
from fasterrcnn.data.repeat_factors import repeat_factors
from fasterrcnn.data.train_dataset import TrainingDataset
from fasterrcnn.data.training_batch import collate_training
from fasterrcnn.modeling.roi_training import background_index
from fasterrcnn.modeling.rpn_training import label_anchors
from fasterrcnn.training.loop import train
from fasterrcnn.training.options import TrainingError, TrainOptions

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> fasterrcnn.Detector:
    torch.manual_seed(0)
    return fasterrcnn.Detector(tiny_config()).train()


@pytest.fixture(scope="module")
def data(model: fasterrcnn.Detector) -> TrainingDataset:
    coco = CocoDataset.load(ANNOTATIONS, IMAGES)
    return TrainingDataset(coco, model.config.classes, model.config.input, (128,), 192)


def _losses(model: fasterrcnn.Detector, data: TrainingDataset, indices: list[int]):
    batch = collate_training([data[(i, 100 + i)] for i in indices])
    model.zero_grad(set_to_none=True)
    raw = model(batch.images, batch.image_sizes, batch.targets)
    losses = model.losses(raw, batch.targets)
    sum(losses.values()).backward()
    return batch, raw, losses


def test_background_only_batch_has_no_box_loss(model, data) -> None:
    background = data.background_indices()
    batch, raw, losses = _losses(model, data, background)
    assert all(len(t.boxes) == 0 for t in batch.targets)
    assert losses["rpn_box"].item() == 0.0 and losses["roi_box"].item() == 0.0
    assert losses["rpn_objectness"].item() > 0 and losses["roi_classification"].item() > 0
    assert all(torch.isfinite(v) for v in losses.values())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    samples = raw.roi_samples
    assert samples is not None and not samples.foreground.any()
    assert (samples.classes == background_index(model.config.box_head)).all()
    # The RPN labels every anchor of such an image background (0), none ignored.
    labels, _ = label_anchors(raw.rpn.anchors, batch.targets[0].boxes, model.config.rpn)
    assert labels.numel() > 0 and (labels == 0).all()


def test_background_image_beside_one_with_boxes(model, data) -> None:
    background = data.background_indices()[0]
    with_boxes = next(i for i in range(len(data)) if data.boxes(i)[0].shape[0] > 0)
    batch, raw, losses = _losses(model, data, [with_boxes, background])
    assert len(batch.targets[0].boxes) > 0 and len(batch.targets[1].boxes) == 0
    assert all(torch.isfinite(v) and v.item() > 0 for v in losses.values())
    samples = raw.roi_samples
    assert samples is not None
    of_background = samples.rois[:, 0] == 1
    assert of_background.any() and not samples.foreground[of_background].any()
    assert samples.foreground[~of_background].any()  # the boxes' own RoIs at least
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_run_with_background_images_and_repeat_factors(model, data, tmp_path: Path) -> None:
    def sampler(seed: int) -> GroupedBatchSampler:
        factors = repeat_factors(data.image_labels(), 0.5)
        return GroupedBatchSampler(data.aspect_groups(), 2, seed, repeat_factors=factors)

    # A seed whose first two iterations hold a background image: the run trains on it.
    seed = next(
        s
        for s in range(100)
        if any(
            k.dataset_index in data.background_indices() for b in islice(sampler(s), 2) for k in b
        )
    )
    options = TrainOptions(
        output=tmp_path, batch_size=2, max_iter=2, lr=0.01, short_sides=(128,), max_side=192,
        workers=0, log_period=1, seed=seed, repeat_threshold=0.5,
    )  # fmt: skip
    result = train(model, data, options)
    assert result.iterations == 2 and result.best is None and not result.stopped_early
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2]
    assert all(r["total"] == pytest.approx(sum(r[k] for k in LOSSES)) for r in records)

    with pytest.raises(TrainingError, match="filtered with drop_empty=False"):
        train(model, data, TrainOptions(output=tmp_path / "other", drop_empty=True))
    with pytest.raises(TrainingError, match="best_metric and patience need an evaluation set"):
        train(model, data, TrainOptions(output=tmp_path / "other", patience=2))
    for bad, problem in [
        ({"best_metric": "mAP"}, "best_metric must be one of AP, AP50, AP75"),
        ({"patience": 0}, "patience must be an integer >= 1, not 0"),
        ({"repeat_threshold": 0.0}, "repeat_threshold must be a number > 0, not 0.0"),
    ]:
        with pytest.raises(TrainingError, match=problem):
            TrainOptions(output=tmp_path, **bad)


LOSSES = ("rpn_objectness", "rpn_box", "roi_classification", "roi_box")
