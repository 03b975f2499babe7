"""What a run reports as it goes: progress lines on the log, JSON lines in ``metrics.jsonl``
and TensorBoard events when ``tensorboard`` is installed."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from fasterrcnn.training.schedule import LRSchedule

logger = logging.getLogger("fasterrcnn")


class Clock:
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


class MetricsLog:
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
        self, done: int, schedule: LRSchedule, losses: dict[str, float], clock: Clock
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

    def evaluation(
        self, done: int, stats: dict[str, float] | None, losses: dict[str, float] | None = None
    ) -> None:
        """The record of an evaluation: the COCO stats as ``eval/<name>`` (when there are
        any) and the validation losses (``val_loss_<name>``, see
        :mod:`~fasterrcnn.training.validation`)."""
        if not self.active or (stats is None and not losses):
            return
        parts = []
        if stats is not None:
            parts.append(", ".join(f"{k} {stats[k]:.4f}" for k in ("AP", "AP50", "AP75")))
        if losses:
            parts.append(f"validation loss {losses['val_loss_total']:.4f}")
        logger.info("iter %d: eval %s", done, "; ".join(parts))
        metrics = {} if stats is None else {f"eval/{k}": v for k, v in stats.items()}
        self._write({"iteration": done, **metrics, **(losses or {})}, done)

    def close(self) -> None:
        if self.active:
            self.file.close()
            if self.writer is not None:
                self.writer.close()
