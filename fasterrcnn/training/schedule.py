"""The learning-rate schedule of training: linear warm-up, then steps of x0.1.

The reference recipe (MegEngine's and detectron2's "1x") is 90,000 iterations of 16 images at
lr 0.02, warm-up over 500 iterations, and steps at 60,000 and 80,000. Other total batch sizes
follow the linear scaling rule: the learning rate scales with the batch, and the iterations
(steps and warm-up included) inversely, so that a schedule always sees the same images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

REFERENCE_BATCH = 16
REFERENCE_LR = 0.02
REFERENCE_WARMUP = 500
# Iterations and steps of each schedule at the reference batch.
SCHEDULES: dict[str, tuple[int, tuple[int, ...]]] = {
    "1x": (90_000, (60_000, 80_000)),
    "2x": (180_000, (120_000, 160_000)),
    "3x": (270_000, (210_000, 250_000)),
}
ScheduleName = Literal["1x", "2x", "3x"]


@dataclass(frozen=True)
class LRSchedule:
    """``base_lr`` after a linear warm-up from ``warmup_factor * base_lr`` over
    ``warmup_iters`` iterations, times ``gamma`` after each of ``steps``; ``max_iter``
    iterations in all."""

    base_lr: float
    max_iter: int
    steps: tuple[int, ...]
    warmup_iters: int
    warmup_factor: float = 0.001
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.max_iter < 1:
            raise ValueError(f"the schedule needs at least 1 iteration, not {self.max_iter}")
        if not self.base_lr > 0 or not math.isfinite(self.base_lr):
            raise ValueError(f"the learning rate must be a positive number, not {self.base_lr}")

    def lr_at(self, iteration: int) -> float:
        """The learning rate of iteration ``iteration`` (0-based)."""
        lr = self.base_lr * self.gamma ** sum(iteration >= s for s in self.steps)
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            lr *= self.warmup_factor * (1 - alpha) + alpha
        return lr


def make_schedule(
    total_batch: int,
    schedule: ScheduleName = "1x",
    max_iter: int | None = None,
    lr: float | None = None,
) -> LRSchedule:
    """The schedule for ``total_batch`` images per iteration (all processes together).

    ``schedule`` scales the reference one by ``16 / total_batch`` (iterations, steps and
    warm-up). ``max_iter`` overrides the length; the steps then sit at the same fractions of
    it (2/3 and 8/9 for every schedule but 3x) and the warm-up is at most a fifth of it.
    ``lr`` overrides the linearly scaled learning rate ``0.02 * total_batch / 16``.
    """
    if total_batch < 1:
        raise ValueError(f"the batch must hold at least 1 image, not {total_batch}")
    reference_iters, reference_steps = SCHEDULES[schedule]
    scale = REFERENCE_BATCH / total_batch
    warmup = round(REFERENCE_WARMUP * scale)
    if max_iter is None:
        length = round(reference_iters * scale)
        steps = tuple(round(s * scale) for s in reference_steps)
    else:
        length = max_iter
        steps = tuple(round(max_iter * s / reference_iters) for s in reference_steps)
        warmup = min(warmup, max_iter // 5)
    base_lr = REFERENCE_LR * total_batch / REFERENCE_BATCH if lr is None else lr
    return LRSchedule(base_lr=base_lr, max_iter=length, steps=steps, warmup_iters=warmup)
