"""COCO evaluation of a model: inference over a dataset's images (sharded across processes),
one gather to rank 0, then pycocotools; or of a results file someone already has.

Results are those of the model's own post-processing (no extra score threshold), as xywh
boxes in original-image pixels with the dataset's category ids.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.dataset_files import EVAL_SPLIT, load_dataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.distributed import broadcast_from_main, current_context
from fasterrcnn.evaluation.coco_metrics import (
    Backend,
    CocoMetrics,
    coco_evaluation,
    keeps_matches,
)
from fasterrcnn.evaluation.dataset_run import (
    DatasetDetections,
    EvalSet,
    class_mapping,
    detect_dataset,
    load_eval_set,
    log_load_report,
)
from fasterrcnn.evaluation.report.writer import (
    ReportError,
    ReportOptions,
    ReportSummary,
    write_report,
)
from fasterrcnn.evaluation.results_json import load_results, write_results
from fasterrcnn.evaluation.thresholds import ScoreCurve, coco_matches
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.inference.slicing import SliceOptions

logger = logging.getLogger("fasterrcnn")


@dataclass
class EvaluationRun:
    """The metrics of a run and what it took: ``images_run`` images through the model in
    ``inference_seconds`` by ``processes`` processes (0 and 0.0 for a results file), the COCO
    evaluation in ``evaluation_seconds``, and one line per image that could not be read.

    ``deploy``: the best-F1 point of :mod:`~fasterrcnn.evaluation.thresholds` (None without
    a true positive, or where the backend keeps no per-image matches); ``report``: the report
    written in ``report_seconds``, or ``report_error`` saying why it could not be."""

    metrics: CocoMetrics
    images_run: int = 0
    inference_seconds: float = 0.0
    evaluation_seconds: float = 0.0
    processes: int = 1
    failures: list[str] = field(default_factory=list)
    deploy: dict[str, float] | None = None
    report: ReportSummary | None = None
    report_seconds: float = 0.0
    report_error: str | None = None


def evaluate(
    model: BatchDetector,
    images: str | Path | None,
    annotations: str | Path,
    *,
    format: str | None = None,
    split: str | None = None,
    classes: str | Path | None = None,
    batch_size: int = 1,
    workers: int = 0,
    max_images: int | None = None,
    allow_missing: bool = False,
    results_file: str | Path | None = None,
    backend: Backend = "pycocotools",
    report: str | Path | ReportOptions | None = None,
    slicing: SliceOptions | None = None,
    progress: bool = True,
) -> CocoMetrics:
    """COCO bbox metrics of ``model`` on the images of folder ``images`` labelled by
    ``annotations``: a COCO instances file, a Pascal VOC folder or root, or a YOLO
    ``data.yaml`` (its ``val`` split unless ``split`` names another); ``images`` may be None
    where the dataset names its images. ``format`` and ``classes`` as in
    :func:`~fasterrcnn.data.dataset_files.load_dataset`.

    Under ``torchrun`` (a process group joined with
    :func:`fasterrcnn.distributed.init_distributed`) each process runs its shard and every
    process returns the same metrics. ``results_file`` also writes the COCO results JSON;
    ``report`` (a folder, or :class:`ReportOptions`) writes the evaluation report there, and
    a :class:`ReportError` says why it could not be. ``slicing`` runs each image as tiles
    (:mod:`~fasterrcnn.inference.slicing`). Images that cannot be read are logged and left
    out of the evaluation. ``progress`` shows a progress bar on stderr.
    """
    options = report_options(report)
    eval_set = load_eval_set(
        annotations, images, max_images, allow_missing, format=format, split=split,
        classes=classes,
    )  # fmt: skip
    run = evaluate_set(
        model, eval_set, batch_size=batch_size, workers=workers, results_file=results_file,
        backend=backend, report=options, slicing=slicing, progress=progress,
    )  # fmt: skip
    if run.report_error is not None:
        raise ReportError(run.report_error)
    return run.metrics


def report_options(report: str | Path | ReportOptions | None) -> ReportOptions | None:
    """``report`` as checked :class:`ReportOptions` (a folder gets the defaults)."""
    if report is None:
        return None
    options = report if isinstance(report, ReportOptions) else ReportOptions(Path(report))
    options.check()
    return options


def evaluate_set(
    model: BatchDetector,
    eval_set: EvalSet,
    *,
    batch_size: int = 1,
    workers: int = 0,
    results_file: str | Path | None = None,
    backend: Backend = "pycocotools",
    report: ReportOptions | None = None,
    slicing: SliceOptions | None = None,
    progress: bool = True,
    deploy: bool = False,
) -> EvaluationRun:
    """:func:`evaluate` on an :class:`EvalSet` already loaded, with the run's figures
    (``deploy``: its deploy threshold too, as ``eval`` prints it).

    A dataset none of whose categories is a class of the model is a :class:`DatasetError`
    before any image is run. Every process returns the same run, or raises the same error
    (a :class:`DatasetError`, an ``OSError`` writing ``results_file``, an ``ImportError``
    for a missing ``backend``). A report that cannot be written leaves the metrics in the
    run and its reason in ``report_error``.
    """
    dataset = eval_set.dataset
    mapping = class_mapping(model, dataset)
    context = current_context()
    if (note := mapping.note()) and context.is_main:
        logger.warning("%s", note)
    start = time.perf_counter()
    found = detect_dataset(
        model, dataset, eval_set.indices, mapping, batch_size=batch_size, workers=workers,
        progress=progress, slicing=slicing,
    )  # fmt: skip
    outcome: EvaluationRun | DatasetError | OSError | ImportError | None = None
    if found is not None:
        inference_seconds = time.perf_counter() - start
        try:
            outcome = evaluate_found(
                dataset, found, results_file, backend, report, progress, deploy
            )
            outcome.images_run, outcome.inference_seconds = len(eval_set.indices), inference_seconds
            outcome.processes = context.world_size
        except (DatasetError, OSError, ImportError) as err:
            outcome = err
    outcome = broadcast_from_main(outcome)
    if isinstance(outcome, Exception):
        raise outcome
    assert outcome is not None
    return outcome


def evaluate_found(
    dataset: CocoDataset,
    found: DatasetDetections,
    results_file: str | Path | None = None,
    backend: Backend = "pycocotools",
    report: ReportOptions | None = None,
    progress: bool = True,
    deploy: bool = False,
) -> EvaluationRun:
    """Write ``found``'s results (when ``results_file`` is given), evaluate them on the
    images that were read, and write the report (when ``report`` is given)."""
    if not found.image_ids:
        raise DatasetError(f"none of the {len(found.failures)} images could be read")
    if found.failures:
        logger.warning(
            "%d image(s) could not be read and are left out of the evaluation",
            len(found.failures),
        )
    if results_file is not None:
        write_results(results_file, found.results)
    run = _evaluate(dataset, found.results, found.image_ids, backend, report, progress, deploy)
    run.failures = found.failures
    return run


def _evaluate(
    dataset: CocoDataset,
    results: np.ndarray,
    image_ids: list[int] | None,
    backend: Backend,
    report: ReportOptions | None,
    progress: bool,
    deploy: bool = False,
) -> EvaluationRun:
    """The metrics of ``results``, when asked the report, and with ``deploy`` their deploy
    threshold (the report's, else read from the evaluator's matches where it keeps them)."""
    start = time.perf_counter()
    metrics, evaluator = coco_evaluation(dataset, results, image_ids, backend)
    run = EvaluationRun(metrics, evaluation_seconds=time.perf_counter() - start)
    if report is not None:
        start = time.perf_counter()
        try:
            run.report = write_report(
                dataset, results, report, image_ids=image_ids, evaluator=evaluator,
                metrics=metrics, progress=progress,
            )  # fmt: skip
            run.deploy = run.report.deploy
        except (ReportError, OSError, ImportError) as err:
            run.report_error = str(err)
        run.report_seconds = time.perf_counter() - start
    if deploy and run.report is None and keeps_matches(evaluator):
        matches = coco_matches(evaluator, len(dataset.classes))
        overall = ScoreCurve.of(matches.scores, matches.true_positive, int(matches.positives.sum()))
        run.deploy = overall.best_f1()
    return run


def evaluate_results_file(
    annotations: str | Path,
    results_file: str | Path,
    backend: Backend = "pycocotools",
    *,
    images: str | Path | None = None,
    format: str | None = None,
    split: str | None = None,
    classes: str | Path | None = None,
    report: ReportOptions | None = None,
    progress: bool = True,
    deploy: bool = False,
) -> EvaluationRun:
    """COCO bbox metrics of a results JSON (as ``--results`` writes it, with the dataset's
    category ids) against the dataset ``annotations`` in any format (as
    :func:`evaluate` reads it), and the report when ``report`` is given; a
    :class:`DatasetError` names a problem with either file."""
    dataset = load_dataset(
        annotations, images, format=format, split=split, classes=classes,
        default_split=EVAL_SPLIT,
    )  # fmt: skip
    log_load_report(dataset)
    results = load_results(results_file, dataset)
    return _evaluate(dataset, results, None, backend, report, progress, deploy)
