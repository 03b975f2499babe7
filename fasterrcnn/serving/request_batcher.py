"""Batching images that arrive one at a time (a server's requests) for one model.

A worker thread takes the waiting images, up to ``max_batch`` of them, or fewer once the
first has waited ``max_wait`` seconds, and runs them through
:func:`~fasterrcnn.inference.loop.run_inference`, which batches only images of the same
padded size: each image gets exactly the result it gets alone. Each caller holds a
:class:`~concurrent.futures.Future` that the worker resolves with the image's
:class:`~fasterrcnn.inference.detections.Detections` (or the error that stopped its batch).

A *sliced* image (submitted with :class:`~fasterrcnn.inference.slicing.SliceOptions`) is one
job of the collected ones, but it never shares a batch with another request's image: after
the plain images of the collected jobs have run together, each sliced image runs on its own
through :func:`~fasterrcnn.inference.slicing.detect_sliced`, its tiles in batches of up to
``max_batch`` (the tiles of an image have one size, so they fill whole batches). Its result
is exactly :func:`~fasterrcnn.inference.predict.predict`'s with the same slicing and score
threshold. Every model call stays on the one worker thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

import numpy as np

from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.loop import run_inference
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.inference.slicing import SliceOptions, detect_sliced

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
    slicing: SliceOptions | None = None
    score_threshold: float | None = None
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
        self.batches_done = 0  # runs of the loop: a batch of plain images, or a sliced image
        self.sliced_done = 0
        self._seconds_per_image = 0.0  # running average, for estimates
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="fasterrcnn-batcher", daemon=True)
        self._thread.start()

    def submit(
        self,
        image: np.ndarray,
        slicing: SliceOptions | None = None,
        score_threshold: float | None = None,
    ) -> tuple[Future[Detections], BatchTiming]:
        """Queue an HxWx3 uint8 RGB image; its future and the timing filled in for it.

        ``slicing``: run it as tiles (see the module docstring); ``score_threshold``: its
        detections below it are dropped (a sliced image's before its tiles are merged, as
        ``fasterrcnn detect --slice`` does).
        """
        if not self._thread.is_alive():
            raise RuntimeError("the batcher is closed")
        if slicing is not None:
            slicing.check()
        job = _Job(image, slicing, score_threshold)
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
            # A job whose caller gave up (cancelled its future) is dropped when its turn comes.
            plain = [
                job
                for job in jobs
                if job.slicing is None and job.future.set_running_or_notify_cancel()
            ]
            if plain:
                self._run(plain)
            for job in jobs:
                if job.slicing is not None and job.future.set_running_or_notify_cancel():
                    self._run_sliced(job, job.slicing)
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
        self._count(jobs, start)
        for job, result in zip(jobs, results, strict=True):
            if result.detections is not None:
                job.future.set_result(_at_least(result.detections, job.score_threshold))
            else:
                job.future.set_exception(result.error or RuntimeError("no result"))

    def _run_sliced(self, job: _Job, slicing: SliceOptions) -> None:
        start = time.perf_counter()
        try:
            detections = detect_sliced(
                self.model, job.image, slicing, batch_size=self.max_batch,
                score_threshold=job.score_threshold,
            )  # fmt: skip
        except Exception as err:
            logger.error("sliced inference failed: %s", err)
            job.future.set_exception(err)
            return
        self.sliced_done += 1
        self._count([job], start)
        job.future.set_result(detections)

    def _count(self, jobs: list[_Job], start: float) -> None:
        """The counters, the running average and the jobs' timings of a finished run."""
        seconds = time.perf_counter() - start
        self.batches_done += 1
        self.images_done += len(jobs)
        average = seconds / len(jobs)
        weight = 0.2 if self._seconds_per_image else 1.0
        self._seconds_per_image += weight * (average - self._seconds_per_image)
        for job in jobs:
            job.timing.waited = start - job.queued_at
            job.timing.inference = seconds
            job.timing.batch_size = len(jobs)


def _at_least(detections: Detections, threshold: float | None) -> Detections:
    """``detections`` without those scored below ``threshold`` (all of them for None)."""
    if threshold is None:
        return detections
    keep = np.flatnonzero(detections.scores >= threshold)
    return replace(
        detections,
        boxes=detections.boxes[keep],
        scores=detections.scores[keep],
        category_ids=detections.category_ids[keep],
        class_names=[detections.class_names[i] for i in keep],
    )
