"""Batching images that arrive one at a time (a server's requests) for one model.

A worker thread takes the waiting images, up to ``max_batch`` of them, or fewer once the
first has waited ``max_wait`` seconds, and runs them through
:func:`~fasterrcnn.inference.loop.run_inference`, which batches only images of the same
padded size: each image gets exactly the result it gets alone. Each caller holds a
:class:`~concurrent.futures.Future` that the worker resolves with the image's
:class:`~fasterrcnn.inference.detections.Detections` (or the error that stopped its batch).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.loop import run_inference
from fasterrcnn.inference.protocol import BatchDetector

logger = logging.getLogger("fasterrcnn")


@dataclass
class BatchTiming:
    """When a job's image was taken off the queue, and how long its batch took (seconds)."""

    waited: float = 0.0
    inference: float = 0.0
    batch_size: int = 0


@dataclass
class _Job:
    image: np.ndarray
    future: Future[Detections] = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)
    timing: BatchTiming = field(default_factory=BatchTiming)


class Batcher:
    """One worker thread running ``model`` on the images :meth:`submit` hands it.

    ``max_batch``: images per batch at most; ``max_wait``: how long (seconds) the first image
    of a batch waits for others to join it. Call :meth:`close` to stop the worker.
    """

    def __init__(self, model: BatchDetector, max_batch: int = 4, max_wait: float = 0.01) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be at least 0, not {max_wait}")
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.images_done = 0
        self.batches_done = 0
        self._seconds_per_image = 0.0  # running average, for estimates
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="fasterrcnn-batcher", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray) -> tuple[Future[Detections], BatchTiming]:
        """Queue an HxWx3 uint8 RGB image; its future and the timing filled in for it."""
        if not self._thread.is_alive():
            raise RuntimeError("the batcher is closed")
        job = _Job(image)
        self._queue.put(job)
        return job.future, job.timing

    @property
    def seconds_per_image(self) -> float:
        """The average model time per image so far (0 before the first batch)."""
        return self._seconds_per_image

    def close(self, timeout: float | None = None) -> None:
        """Stop the worker once the images already queued are done."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            # A job whose caller gave up (cancelled its future) is dropped here.
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if jobs:
                self._run(jobs)
            if stop:
                return

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` and the jobs that join it within ``max_wait``; whether to stop after."""
        jobs = [first]
        deadline = time.perf_counter() + self.max_wait
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(deadline - time.perf_counter(), 0.0))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _run(self, jobs: list[_Job]) -> None:
        start = time.perf_counter()
        try:
            results = list(
                run_inference(self.model, [job.image for job in jobs], batch_size=len(jobs))
            )
        except Exception as err:  # the model failed: every caller of the batch is told
            logger.error("inference failed on a batch of %d image(s): %s", len(jobs), err)
            for job in jobs:
                job.future.set_exception(err)
            return
        seconds = time.perf_counter() - start
        self.batches_done += 1
        self.images_done += len(jobs)
        average = seconds / len(jobs)
        weight = 0.2 if self._seconds_per_image else 1.0
        self._seconds_per_image += weight * (average - self._seconds_per_image)
        for job, result in zip(jobs, results, strict=True):
            job.timing.waited = start - job.queued_at
            job.timing.inference = seconds
            job.timing.batch_size = len(jobs)
            if result.detections is not None:
                job.future.set_result(result.detections)
            else:
                job.future.set_exception(result.error or RuntimeError("no result"))
