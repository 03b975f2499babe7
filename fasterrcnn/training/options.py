"""What a training run is told and what it gives back: its options, its result, the names of
the files it writes, and the error that stops it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fasterrcnn.modeling.precision import Precision
from fasterrcnn.training.schedule import ScheduleName

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint_state.pt"
FINAL = "model_final.safetensors"


class TrainingError(RuntimeError):
    """A run that cannot start or go on (one-line message)."""


@dataclass(frozen=True)
class TrainOptions:
    """Settings of a run. ``batch_size`` is per process; ``schedule``, ``max_iter`` and ``lr``
    make the learning-rate schedule (see :func:`~fasterrcnn.training.schedule.make_schedule`).
    ``eval_period`` 0 evaluates (when an evaluation set is given) once, at the end."""

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


@dataclass
class TrainResult:
    """The iterations run, the final model file, the last logged losses and every logged
    record (what ``metrics.jsonl`` holds)."""

    iterations: int
    final: Path
    last_losses: dict[str, float]
    metrics: list[dict[str, Any]]


def check_output_folder(folder: Path) -> None:
    """Create ``folder`` and make sure files can be written in it (before any training)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise TrainingError(f"output folder {folder}: {err.strerror or err}") from None
