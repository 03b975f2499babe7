"""The training loop: from one CPU process to many GPUs under ``torchrun`` (DDP).

Every process runs ``batch_size`` images per iteration (its slice of the global batch, see
:class:`~fasterrcnn.data.group_sampler.GroupedBatchSampler`); DDP averages the gradients.
Each iteration is a pure function of the run's seed, its number and the weights: images,
augmentation and the sampled anchors and RoIs are keyed by them, so a resumed run repeats an
uninterrupted one (on CPU, loss for loss).

With an evaluation set, every ``eval_period`` iterations and at the end the run measures
COCO metrics and validation losses (:mod:`~fasterrcnn.training.validation`), keeps the
weights of the best evaluation of ``best_metric`` in ``model_best.safetensors`` and, with
``patience``, stops when the metric has stopped improving
(:mod:`~fasterrcnn.training.best_model`).

The output folder holds ``metrics.jsonl`` (one JSON line per logged iteration and per
evaluation), TensorBoard events when ``tensorboard`` is installed, the latest checkpoint
(``checkpoint.safetensors``, a native model file, with ``checkpoint_state.pt``, the optimizer
state, the iteration and the best evaluation so far), ``model_best.safetensors`` and at the
end ``model_final.safetensors``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader

from fasterrcnn.data.group_sampler import GroupedBatchSampler
from fasterrcnn.data.repeat_factors import describe_factors, repeat_factors
from fasterrcnn.data.train_dataset import TrainingDataset
from fasterrcnn.data.training_batch import TrainingBatch, collate_training
from fasterrcnn.distributed import barrier, broadcast_from_main, current_context
from fasterrcnn.evaluation.dataset_run import EvalSet
from fasterrcnn.inference.detector import Detector
from fasterrcnn.modeling.precision import autocast_for
from fasterrcnn.modeling.targets import Targets
from fasterrcnn.training.best_model import BestTracker, restore_tracker, save_best
from fasterrcnn.training.checkpointing import (
    non_finite_message,
    resume,
    run_metadata,
    save_checkpoint,
)
from fasterrcnn.training.metrics_log import Clock, MetricsLog
from fasterrcnn.training.options import (
    FINAL,
    TrainingError,
    TrainOptions,
    TrainResult,
    check_output_folder,
)
from fasterrcnn.training.schedule import make_schedule
from fasterrcnn.training.start import trainable_parameters
from fasterrcnn.training.validation import (
    ValidationSamples,
    coco_metrics,
    validation_losses,
    validation_samples,
)
from fasterrcnn.zoo.native import save_native

logger = logging.getLogger("fasterrcnn")


class _LossModule(nn.Module):
    """The network and its losses as one module, so that DDP wraps exactly what runs."""

    def __init__(self, model: Detector) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: Tensor, image_sizes: list[tuple[int, int]], targets: list[Targets]
    ) -> dict[str, Tensor]:
        return self.model.losses(self.model(images, image_sizes, targets), targets)


def train(
    model: Detector,
    data: TrainingDataset,
    options: TrainOptions,
    *,
    evaluation: EvalSet | None = None,
    preset: str | None = None,
) -> TrainResult:
    """Train ``model`` (on its device, in place) on ``data``; see the module docstring."""
    context = current_context()
    device = model.device
    out = options.output
    _check_run(data, options, evaluation)
    check_output_folder(out)
    schedule = make_schedule(
        options.batch_size * context.world_size, options.schedule, options.max_iter, options.lr
    )
    parameters = trainable_parameters(model)
    optimizer = torch.optim.SGD(
        parameters,
        lr=schedule.base_lr,
        momentum=options.momentum,
        weight_decay=options.weight_decay,
    )
    start, best_state = 0, None
    if options.resume:
        start, best_state = resume(model, optimizer, options, context.world_size)
    if start >= schedule.max_iter:
        raise TrainingError(f"{out}: the run is already complete ({start} iterations)")
    tracker = restore_tracker(options, best_state)
    samples = None if evaluation is None else validation_samples(model, evaluation, options)
    network: nn.Module = _LossModule(model)
    if context.world_size > 1:
        if _has_batch_norm(model) and device.type == "cuda":
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
        elif _has_batch_norm(model) and context.is_main:
            logger.info("batch norm statistics are per process (SyncBN needs CUDA devices)")
        network = nn.parallel.DistributedDataParallel(
            network, device_ids=[device] if device.type == "cuda" else None
        )
    factors = None
    if options.repeat_threshold is not None:
        factors = repeat_factors(data.image_labels(), options.repeat_threshold)
        if context.is_main:
            logger.info("%s", describe_factors(factors, options.repeat_threshold))
    sampler = GroupedBatchSampler(
        data.aspect_groups(),
        options.batch_size,
        options.seed,
        rank=context.rank,
        world_size=context.world_size,
        start_iteration=start,
        repeat_factors=factors,
    )
    loader = DataLoader(
        data,
        batch_sampler=sampler,
        num_workers=options.workers,
        collate_fn=collate_training,
        pin_memory=device.type == "cuda",
    )
    log = MetricsLog(out, context.is_main)
    if context.is_main:
        logger.info(
            "training %d iterations of %d image(s) x %d process(es), lr %g, steps %s, "
            "warm-up %d; from iteration %d",
            schedule.max_iter, options.batch_size, context.world_size, schedule.base_lr,
            list(schedule.steps), schedule.warmup_iters, start,
        )  # fmt: skip
    scaler = torch.amp.GradScaler(enabled=options.precision == "fp16")
    losses: dict[str, float] = {}
    clock = Clock(start, schedule.max_iter)
    model.train()
    batches: Iterator[TrainingBatch] = iter(loader)
    done, stopped = start, False
    for iteration in range(start, schedule.max_iter):
        batch = next(batches).to(device)
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr_at(iteration)
        with autocast_for(device, options.precision):
            loss_dict = network(batch.images, batch.image_sizes, batch.targets)
        total = sum(loss_dict.values())
        assert isinstance(total, Tensor)
        if not _all_finite(total):
            raise TrainingError(non_finite_message(iteration, loss_dict, out))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if options.clip_grad_norm is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(parameters, options.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        done = iteration + 1
        clock.tick()
        if done % options.log_period == 0 or done == schedule.max_iter or iteration == start:
            losses = _mean_across_ranks({**loss_dict, "total": total})
            log.iteration(done, schedule, losses, clock)
        if samples is not None and options.eval_period and done % options.eval_period == 0:
            assert evaluation is not None
            _evaluate(model, evaluation, samples, options, tracker, log, done, preset)
            stopped = tracker.exhausted and done < schedule.max_iter
            if stopped and context.is_main:
                logger.info("iter %d: %s", done, tracker.stop_line())
        if stopped or (done % options.checkpoint_period == 0 and done < schedule.max_iter):
            save_checkpoint(
                model, optimizer, options, done, preset, context.world_size, tracker.state()
            )
        if stopped:
            break
    last_evaluated = options.eval_period and done % options.eval_period == 0
    if samples is not None and not stopped and not last_evaluated:
        assert evaluation is not None
        _evaluate(model, evaluation, samples, options, tracker, log, done, preset)
    if not stopped:  # after the last evaluation, whose best the state keeps
        save_checkpoint(
            model, optimizer, options, done, preset, context.world_size, tracker.state()
        )
    final = out / FINAL
    if context.is_main:
        save_native(final, model, model.config, preset=preset, metadata=run_metadata(options))
        logger.info("saved %s", final)
    barrier()
    log.close()
    return TrainResult(done, final, losses, log.records, tracker.best, stopped)


def _check_run(data: TrainingDataset, options: TrainOptions, evaluation: EvalSet | None) -> None:
    """One-line errors for options that the data or the missing evaluation set contradict."""
    if evaluation is None and (options.patience is not None or options.best_metric != "AP"):
        raise TrainingError(
            "best_metric and patience need an evaluation set (--eval-images and --eval-annotations)"
        )
    if (data.drop_empty, data.use_crowd) != (options.drop_empty, options.use_crowd):
        raise TrainingError(
            f"the training data was filtered with drop_empty={data.drop_empty}, "
            f"use_crowd={data.use_crowd}, the options say drop_empty={options.drop_empty}, "
            f"use_crowd={options.use_crowd}"
        )


def _evaluate(
    model: Detector,
    evaluation: EvalSet,
    samples: ValidationSamples,
    options: TrainOptions,
    tracker: BestTracker,
    log: MetricsLog,
    done: int,
    preset: str | None,
) -> None:
    """Evaluate at iteration ``done``: log the metrics and validation losses, count the
    evaluation in ``tracker`` and write the model when it is the best so far."""
    stats = broadcast_from_main(coco_metrics(model, evaluation))
    log.evaluation(done, stats, validation_losses(model, samples, options))
    if tracker.update(done, stats):
        if current_context().is_main:
            save_best(model, options, tracker, preset)
        barrier()


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _all_finite(total: Tensor) -> bool:
    """Whether every process's loss is finite (all processes stop together)."""
    finite = torch.isfinite(total.detach()).to(torch.int32).reshape(1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def _mean_across_ranks(values: dict[str, Tensor]) -> dict[str, float]:
    stacked = torch.stack([v.detach().float() for v in values.values()])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return dict(zip(values, stacked.tolist(), strict=True))
