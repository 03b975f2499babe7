"""The best evaluation of a run and its patience: which evaluation scored the highest value of
the chosen COCO metric, ``model_best.safetensors`` holding its weights, and when a run that
stopped improving ends.

An evaluation improves when its value is strictly greater than the best so far; one without
metrics (no detections) or with an undefined value (-1 or NaN) does not. ``patience`` N ends
the run after N evaluations in a row without improvement. The tracker's state travels in
``checkpoint_state.pt`` so that ``--resume`` goes on counting where the run was.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from fasterrcnn.inference.detector import Detector
from fasterrcnn.training.checkpointing import run_metadata
from fasterrcnn.training.options import BEST, TrainingError, TrainOptions
from fasterrcnn.zoo.native import save_native

logger = logging.getLogger("fasterrcnn")


@dataclass
class BestTracker:
    """The best ``value`` of ``metric`` so far and its ``iteration`` (None before any), and
    ``misses``: the evaluations since then (or since the start) that did not improve it."""

    metric: str
    patience: int | None
    value: float | None = None
    iteration: int | None = None
    misses: int = 0

    def update(self, iteration: int, stats: dict[str, float] | None) -> bool:
        """Count the evaluation of ``iteration`` (its COCO stats, or None); whether it is the
        new best."""
        value = None if stats is None else float(stats[self.metric])
        if value is not None and value >= 0 and (self.value is None or value > self.value):
            self.value, self.iteration, self.misses = value, iteration, 0
            return True
        self.misses += 1
        return False

    @property
    def exhausted(self) -> bool:
        """Whether ``patience`` evaluations in a row have not improved the metric."""
        return self.patience is not None and self.misses >= self.patience

    @property
    def best(self) -> tuple[int, float] | None:
        """(iteration, value) of the best evaluation, or None."""
        if self.iteration is None or self.value is None:
            return None
        return self.iteration, self.value

    def describe(self) -> str:
        """The metric and its best value with its iteration, for a log line."""
        if self.best is None:
            return f"{self.metric} (no evaluation scored it yet)"
        return f"{self.metric} (best {self.value:.4f} at iteration {self.iteration})"

    def stop_line(self) -> str:
        """The log line of a run that patience stops."""
        evaluations = "evaluation" if self.misses == 1 else f"{self.misses} evaluations in a row"
        return f"stopping early: {evaluations} did not improve {self.describe()}"

    def state(self) -> dict[str, Any]:
        """What ``checkpoint_state.pt`` keeps (plain types)."""
        return {
            "metric": self.metric,
            "value": self.value,
            "iteration": self.iteration,
            "misses": self.misses,
        }


def restore_tracker(options: TrainOptions, state: dict[str, Any] | None) -> BestTracker:
    """The tracker of a run from its checkpoint's ``state`` (None: a fresh one; a state of
    another metric is not carried over). A resumed run that patience already stopped is a
    :class:`TrainingError`."""
    tracker = BestTracker(options.best_metric, options.patience)
    if state is None:
        return tracker
    if state.get("metric") != options.best_metric:
        logger.info(
            "the checkpoint tracked %s, this run %s: the best value starts afresh",
            state.get("metric"), options.best_metric,
        )  # fmt: skip
        return tracker
    value = state.get("value")
    tracker.value = None if value is None else float(value)
    iteration = state.get("iteration")
    tracker.iteration = None if iteration is None else int(iteration)
    tracker.misses = int(state.get("misses", 0))
    if tracker.exhausted:
        raise TrainingError(
            f"--resume: the run in {options.output} already stopped early after "
            f"{tracker.misses} evaluation(s) that did not improve {tracker.describe()}; give a "
            "larger --patience to go on"
        )
    return tracker


def save_best(
    model: Detector, options: TrainOptions, tracker: BestTracker, preset: str | None
) -> None:
    """Write ``model_best.safetensors`` (atomically, a native model file) with the best
    evaluation's iteration, metric and value in its metadata."""
    if tracker.value is None or not math.isfinite(tracker.value):
        raise ValueError("save_best needs a best value")
    metadata = {
        **run_metadata(options),
        "iteration": str(tracker.iteration),
        "best_metric": tracker.metric,
        "best_value": repr(tracker.value),
    }
    path = options.output / BEST
    save_native(path, model, model.config, preset=preset, metadata=metadata)
    logger.info(
        "iter %d: new best %s %.4f, saved %s",
        tracker.iteration, tracker.metric, tracker.value, path,
    )  # fmt: skip
