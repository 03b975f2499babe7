"""The training loop: from one CPU process to many GPUs under ``torchrun`` (DDP).

Every process runs ``batch_size`` images per iteration (its slice of the global batch, see
:class:`~fasterrcnn.data.group_sampler.GroupedBatchSampler`); DDP averages the gradients.
Each iteration is a pure function of the run's seed, its number and the weights: images,
augmentation and the sampled anchors and RoIs are keyed by them, so a resumed run repeats an
uninterrupted one (on CPU, loss for loss).

The output folder holds ``metrics.jsonl`` (one JSON line per logged iteration and per
evaluation), TensorBoard events when ``tensorboard`` is installed, the latest checkpoint
(``checkpoint.safetensors``, a native model file, with ``checkpoint_state.pt``, the optimizer
state and the iteration) and at the end ``model_final.safetensors``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader

from fasterrcnn.config_io import config_to_json
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.group_sampler import GroupedBatchSampler
from fasterrcnn.data.train_dataset import TrainingBatch, TrainingDataset, collate_training
from fasterrcnn.engine.detector import Detector
from fasterrcnn.engine.distributed import current_context
from fasterrcnn.engine.evaluate import class_mapping, detect_dataset, evaluate_found
from fasterrcnn.engine.schedule import LRSchedule, ScheduleName, make_schedule
from fasterrcnn.engine.train_setup import trainable_parameters
from fasterrcnn.modeling.targets import Targets
from fasterrcnn.zoo.native import read_native, save_native

logger = logging.getLogger("fasterrcnn")

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint_state.pt"
FINAL = "model_final.safetensors"
Precision = Literal["fp32", "bf16", "fp16"]


class TrainingError(RuntimeError):
    """A run that cannot start or go on (one-line message)."""


@dataclass(frozen=True)
class TrainOptions:
    """Settings of a run. ``batch_size`` is per process; ``schedule``, ``max_iter`` and ``lr``
    make the learning-rate schedule (see :func:`~fasterrcnn.engine.schedule.make_schedule`).
    ``eval_period`` 0 evaluates (when an evaluation set is given) once, at the end."""

    output: Path
    batch_size: int = 2
    schedule: ScheduleName = "1x"
    max_iter: int | None = None
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    short_sides: tuple[int, ...] = (640, 672, 704, 736, 768, 800)
    max_side: int = 1333
    flip_prob: float = 0.5
    clip_grad_norm: float | None = None
    precision: Precision = "fp32"
    workers: int = 2
    seed: int = 0
    log_period: int = 20
    checkpoint_period: int = 5000
    eval_period: int = 0
    resume: bool = False


@dataclass
class EvalSet:
    """Images and ground truth to evaluate on during training."""

    dataset: CocoDataset
    indices: list[int]


@dataclass
class TrainResult:
    iterations: int
    final: Path
    last_losses: dict[str, float]
    metrics: list[dict[str, Any]]


class _LossModule(nn.Module):
    """The network and its losses as one module, so that DDP wraps exactly what runs."""

    def __init__(self, model: Detector) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: Tensor, image_sizes: list[tuple[int, int]], targets: list[Targets]
    ) -> dict[str, Tensor]:
        return self.model.losses(self.model(images, image_sizes, targets), targets)


def check_output_folder(folder: Path) -> None:
    """Create ``folder`` and make sure files can be written in it (before any training)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise TrainingError(f"output folder {folder}: {err.strerror or err}") from None


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
    start = _resume(model, optimizer, options, context.world_size) if options.resume else 0
    if start >= schedule.max_iter:
        raise TrainingError(f"{out}: the run is already complete ({start} iterations)")
    network: nn.Module = _LossModule(model)
    if context.world_size > 1:
        if _has_batch_norm(model) and device.type == "cuda":
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
        elif _has_batch_norm(model) and context.is_main:
            logger.info("batch norm statistics are per process (SyncBN needs CUDA devices)")
        network = nn.parallel.DistributedDataParallel(
            network, device_ids=[device] if device.type == "cuda" else None
        )
    sampler = GroupedBatchSampler(
        data.aspect_groups(),
        options.batch_size,
        options.seed,
        rank=context.rank,
        world_size=context.world_size,
        start_iteration=start,
    )
    loader = DataLoader(
        data,
        batch_sampler=sampler,
        num_workers=options.workers,
        collate_fn=collate_training,
        pin_memory=device.type == "cuda",
    )
    log = _MetricsLog(out, context.is_main)
    if context.is_main:
        logger.info(
            "training %d iterations of %d image(s) x %d process(es), lr %g, steps %s, "
            "warm-up %d; from iteration %d",
            schedule.max_iter, options.batch_size, context.world_size, schedule.base_lr,
            list(schedule.steps), schedule.warmup_iters, start,
        )  # fmt: skip
    scaler = torch.amp.GradScaler(enabled=options.precision == "fp16")
    losses: dict[str, float] = {}
    clock = _Clock(start, schedule.max_iter)
    model.train()
    batches: Iterator[TrainingBatch] = iter(loader)
    for iteration in range(start, schedule.max_iter):
        batch = next(batches).to(device)
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr_at(iteration)
        with _autocast(device, options.precision):
            loss_dict = network(batch.images, batch.image_sizes, batch.targets)
        total = sum(loss_dict.values())
        assert isinstance(total, Tensor)
        if not _all_finite(total):
            raise TrainingError(_non_finite_message(iteration, loss_dict, out))
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
        if done % options.checkpoint_period == 0 and done < schedule.max_iter:
            _save_checkpoint(model, optimizer, options, done, preset, context.world_size)
        if evaluation is not None and options.eval_period and done % options.eval_period == 0:
            log.evaluation(done, _evaluate(model, evaluation))
    _save_checkpoint(model, optimizer, options, schedule.max_iter, preset, context.world_size)
    final = out / FINAL
    if context.is_main:
        save_native(final, model, model.config, preset=preset, metadata=_metadata(options))
        logger.info("saved %s", final)
    if evaluation is not None and (
        not options.eval_period or schedule.max_iter % options.eval_period
    ):
        log.evaluation(schedule.max_iter, _evaluate(model, evaluation))
    _barrier()
    log.close()
    return TrainResult(schedule.max_iter, final, losses, log.records)


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


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


def _non_finite_message(iteration: int, losses: dict[str, Tensor], out: Path) -> str:
    values = ", ".join(f"{k} {v.item():.4g}" for k, v in losses.items())
    state = out / CHECKPOINT_STATE
    if state.is_file():
        saved = torch.load(state, weights_only=True)["iteration"]
        kept = f"the last good checkpoint is {out / CHECKPOINT} (iteration {saved})"
    else:
        kept = "no checkpoint was written yet"
    return (
        f"non-finite loss at iteration {iteration + 1} ({values}); training stopped, {kept}; "
        "try a lower --lr or --clip-grad"
    )


def _metadata(options: TrainOptions) -> dict[str, str]:
    return {"schedule": options.schedule, "seed": str(options.seed)}


def _save_checkpoint(
    model: Detector,
    optimizer: torch.optim.Optimizer,
    options: TrainOptions,
    iteration: int,
    preset: str | None,
    world_size: int,
) -> None:
    """The model (native file) and then the state that names it, each written atomically;
    the state's iteration is also in the model file, so a pair cut in half is detected."""
    if current_context().is_main:
        out = options.output
        metadata = {**_metadata(options), "iteration": str(iteration)}
        save_native(out / CHECKPOINT, model, model.config, preset=preset, metadata=metadata)
        state = {
            "iteration": iteration,
            "optimizer": optimizer.state_dict(),
            "config": config_to_json(model.config),
            "batch_size": options.batch_size,
            "world_size": world_size,
            "seed": options.seed,
        }
        temporary = out / f".{CHECKPOINT_STATE}.tmp"
        torch.save(state, temporary)
        os.replace(temporary, out / CHECKPOINT_STATE)
    _barrier()


def _resume(
    model: Detector, optimizer: torch.optim.Optimizer, options: TrainOptions, world_size: int
) -> int:
    """Load the output folder's checkpoint into ``model`` and ``optimizer``; its iteration."""
    out = options.output
    state_path, model_path = out / CHECKPOINT_STATE, out / CHECKPOINT
    if not state_path.is_file() or not model_path.is_file():
        raise TrainingError(
            f"--resume: no checkpoint in {out} ({CHECKPOINT_STATE} and {CHECKPOINT})"
        )
    try:
        state = torch.load(state_path, weights_only=True, map_location="cpu")
    except Exception as err:  # a truncated or foreign file: one line whatever the reason
        raise TrainingError(f"--resume: {state_path} cannot be read ({err})") from None
    if state.get("config") != config_to_json(model.config):
        raise TrainingError(
            f"--resume: the checkpoint in {out} is of another model configuration than this "
            "run's (other preset, classes or training settings)"
        )
    native = read_native(model_path)
    if native.metadata.get("iteration") != str(state["iteration"]):
        raise TrainingError(f"--resume: {model_path} and {state_path} are of different iterations")
    if (state["batch_size"], state["world_size"], state["seed"]) != (
        options.batch_size,
        world_size,
        options.seed,
    ):
        raise TrainingError(
            f"--resume: the run used batch {state['batch_size']} x {state['world_size']} "
            f"process(es) and seed {state['seed']}; resume it with the same"
        )
    model.load_state_dict(native.state_dict)
    optimizer.load_state_dict(state["optimizer"])
    logger.info("resumed from %s at iteration %d", model_path, state["iteration"])
    return int(state["iteration"])


def _evaluate(model: Detector, evaluation: EvalSet) -> dict[str, float] | None:
    """COCO AP on the evaluation set (all processes run their shard; rank 0 evaluates)."""
    model.eval()
    try:
        dataset = evaluation.dataset
        found = detect_dataset(model, dataset, evaluation.indices, class_mapping(model, dataset))
        metrics = None if found is None else evaluate_found(dataset, found).stats
    finally:
        model.train()
    return metrics


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class _Clock:
    """Iterations per second over the run so far, and the time left."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end, self.done = start, end, start
        self.began = time.perf_counter()

    def tick(self) -> None:
        self.done += 1

    @property
    def rate(self) -> float:
        return (self.done - self.start) / max(time.perf_counter() - self.began, 1e-9)

    @property
    def eta(self) -> str:
        seconds = round((self.end - self.done) / max(self.rate, 1e-9))
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _MetricsLog:
    """Progress lines on the log, JSON lines in ``metrics.jsonl`` and TensorBoard events."""

    def __init__(self, out: Path, active: bool) -> None:
        self.active = active
        self.records: list[dict[str, Any]] = []
        self.writer: Any = None
        if not active:
            return
        self.file = (out / "metrics.jsonl").open("a")
        with contextlib.suppress(ImportError):  # TensorBoard is optional
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out))

    def _write(self, record: dict[str, Any], step: int) -> None:
        self.records.append(record)
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, float) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def iteration(
        self, done: int, schedule: LRSchedule, losses: dict[str, float], clock: _Clock
    ) -> None:
        if not self.active:
            return
        lr = schedule.lr_at(done - 1)
        parts = ", ".join(f"{k} {v:.4f}" for k, v in losses.items() if k != "total")
        logger.info(
            "iter %d/%d  loss %.4f (%s)  lr %.5f  %.2f it/s  ETA %s",
            done, schedule.max_iter, losses["total"], parts, lr, clock.rate, clock.eta,
        )  # fmt: skip
        self._write({"iteration": done, "lr": lr, **losses, "it_per_s": clock.rate}, done)

    def evaluation(self, done: int, stats: dict[str, float] | None) -> None:
        if not self.active or stats is None:
            return
        logger.info(
            "iter %d: eval AP %.4f, AP50 %.4f, AP75 %.4f", done, stats["AP"], stats["AP50"],
            stats["AP75"],
        )  # fmt: skip
        self._write({"iteration": done, **{f"eval/{k}": v for k, v in stats.items()}}, done)

    def close(self) -> None:
        if self.active:
            self.file.close()
            if self.writer is not None:
                self.writer.close()
