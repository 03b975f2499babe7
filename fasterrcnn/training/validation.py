"""What a run measures on its evaluation set: COCO metrics, and losses under the training rules.

The validation losses are the training losses (the same loss code, RPN and RoI sampling with
the train-time proposal counts) of the evaluation set's images, filtered as the training data
is (background-only images kept; the model's classes matched to the dataset's categories by
id or name, as the evaluation matches them), resized to the model's test short side and long side, never
flipped. Each image's anchors and RoIs are drawn from a seed of (run seed, image), so that the
evaluations of a run compare like with like. They run without gradients and change nothing:
batch norm layers use (and keep) their running statistics while they run. Every process runs
its shard of the images, one per batch; the losses are the mean over all images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from fasterrcnn.data.group_sampler import SampleKey, derived_seed
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.data.train_dataset import TrainingDataset
from fasterrcnn.data.training_batch import collate_training
from fasterrcnn.distributed import current_context
from fasterrcnn.evaluation.dataset_run import EvalSet, class_mapping, detect_dataset
from fasterrcnn.evaluation.evaluate import evaluate_found
from fasterrcnn.inference.detector import Detector
from fasterrcnn.modeling.precision import autocast_for
from fasterrcnn.training.options import TrainingError, TrainOptions

LOSS_NAMES = ("rpn_objectness", "rpn_box", "roi_classification", "roi_box")
PREFIX = "val_loss_"  # metrics.jsonl keys: val_loss_rpn_objectness, ..., val_loss_total


@dataclass
class ValidationSamples:
    """The evaluation set as training samples: ``data`` over its dataset and the ``indices``
    (into ``data``) of the evaluation set's images that the filtering kept."""

    data: TrainingDataset
    indices: list[int]


def validation_samples(
    model: Detector, evaluation: EvalSet, options: TrainOptions
) -> ValidationSamples:
    """The validation losses' samples of ``evaluation`` (see the module docstring); a
    :class:`TrainingError` when the evaluation set has no usable box."""
    cfg = model.config.input
    try:
        class_mapping(model, evaluation.dataset)  # an error when no category is a class
        data = TrainingDataset(
            evaluation.dataset, model.config.classes, cfg, (cfg.short_side,), cfg.max_side,
            flip_prob=0.0, use_crowd=options.use_crowd,
        )  # fmt: skip
    except DatasetError as err:
        raise TrainingError(f"evaluation set: {err}") from None
    chosen = {evaluation.dataset.images[i].id for i in evaluation.indices}
    return ValidationSamples(data, [i for i, n in enumerate(data.image_ids) if n in chosen])


def validation_losses(
    model: Detector, samples: ValidationSamples, options: TrainOptions
) -> dict[str, float]:
    """``{"val_loss_<name>": mean, ..., "val_loss_total": mean}`` over all processes' images
    (empty when there is no image)."""
    context = current_context()
    device = model.device
    mine = samples.indices[context.rank :: context.world_size]
    keys = [[SampleKey(i, derived_seed(options.seed, 3, i))] for i in mine]
    loader = DataLoader(
        samples.data, batch_sampler=keys, num_workers=options.workers if keys else 0,
        collate_fn=collate_training,
    )  # fmt: skip
    sums = torch.zeros(len(LOSS_NAMES) + 1, dtype=torch.float64, device=device)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in norms]
    for norm in norms:
        norm.eval()  # running statistics, left as they are
    try:
        with torch.no_grad():
            for batch in loader:
                batch = batch.to(device)
                with autocast_for(device, options.precision):
                    raw = model(batch.images, batch.image_sizes, batch.targets)
                    losses = model.losses(raw, batch.targets)
                values = torch.stack([losses[name].double() for name in LOSS_NAMES])
                sums[:-1] += values * len(batch)
                sums[-1] += len(batch)
    finally:
        for norm, mode in zip(norms, modes, strict=True):
            norm.train(mode)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    count = float(sums[-1])
    if not count:
        return {}
    means = (sums[:-1] / count).tolist()
    return {
        **{PREFIX + name: mean for name, mean in zip(LOSS_NAMES, means, strict=True)},
        PREFIX + "total": sum(means),
    }


def coco_metrics(model: Detector, evaluation: EvalSet) -> dict[str, float] | None:
    """COCO stats on the evaluation set (all processes run their shard; rank 0 evaluates, the
    other ranks get None), or None when nothing was detected."""
    was_training = model.training
    model.eval()
    try:
        dataset = evaluation.dataset
        found = detect_dataset(model, dataset, evaluation.indices, class_mapping(model, dataset))
        metrics = None if found is None else evaluate_found(dataset, found).metrics.stats
    finally:
        model.train(was_training)
    return metrics
