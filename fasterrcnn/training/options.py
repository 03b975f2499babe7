"""What a training run is told and what it gives back: its options, its result, the names of
the files it writes, and the error that stops it."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fasterrcnn.evaluation.coco_metrics import STAT_NAMES
from fasterrcnn.modeling.precision import Precision
from fasterrcnn.training.schedule import ScheduleName

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint_state.pt"
FINAL = "model_final.safetensors"
BEST = "model_best.safetensors"


class TrainingError(RuntimeError):
    """A run that cannot start or go on (one-line message)."""


@dataclass(frozen=True)
class TrainOptions:
    """Settings of a run. ``batch_size`` is per process; ``schedule``, ``max_iter`` and ``lr``
    make the learning-rate schedule (see :func:`~fasterrcnn.training.schedule.make_schedule`).
    ``eval_period`` 0 evaluates (when an evaluation set is given) once, at the end.

    ``drop_empty`` and ``use_crowd``: how the training data was filtered (see
    :class:`~fasterrcnn.data.train_dataset.TrainingDataset`; the run checks that its data
    agrees), and how the validation losses filter the evaluation set. ``repeat_threshold``:
    repeat-factor sampling with that threshold (:mod:`fasterrcnn.data.repeat_factors`), None
    for none. ``best_metric`` (one of the 12 COCO stats): after each evaluation that improves
    it, ``model_best.safetensors`` is written; ``patience``: stop after that many evaluations
    in a row without improvement (None: never). A ``best_metric`` other than ``"AP"`` or a
    ``patience`` needs an evaluation set.
    """

    output: Path
    batch_size: int = 2
    schedule: ScheduleName = "1x"
    max_iter: int | None = None
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    short_sides: tuple[int, ...] = (640, 672, 704, 736, 768, 800)  # the seed's, by 32
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
    drop_empty: bool = False
    use_crowd: bool = False
    repeat_threshold: float | None = None
    best_metric: str = "AP"
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.best_metric not in STAT_NAMES:
            raise TrainingError(
                f"best_metric must be one of {', '.join(STAT_NAMES)}, not {self.best_metric!r}"
            )
        patience = self.patience
        if patience is not None and (
            not isinstance(patience, int) or isinstance(patience, bool) or patience < 1
        ):
            raise TrainingError(f"patience must be an integer >= 1, not {patience!r}")
        threshold = self.repeat_threshold
        if threshold is not None and (
            not isinstance(threshold, (int, float))
            or isinstance(threshold, bool)
            or not math.isfinite(threshold)
            or threshold <= 0
        ):
            raise TrainingError(f"repeat_threshold must be a number > 0, not {threshold!r}")


@dataclass
class TrainResult:
    """The iterations run, the final model file, the last logged losses and every logged
    record (what ``metrics.jsonl`` holds); ``best``: (iteration, value) of the best
    evaluation of ``best_metric`` (None without one), ``stopped_early``: whether
    ``patience`` stopped the run before its last iteration."""

    iterations: int
    final: Path
    last_losses: dict[str, float]
    metrics: list[dict[str, Any]]
    best: tuple[int, float] | None = None
    stopped_early: bool = False


def check_output_folder(folder: Path) -> None:
    """Create ``folder`` and make sure files can be written in it (before any training)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise TrainingError(f"output folder {folder}: {err.strerror or err}") from None
