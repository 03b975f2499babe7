"""``fasterrcnn eval``: COCO metrics of a model on a dataset, or of a results file."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from fasterrcnn.cli.backend_options import add_backend_option, load_detector
from fasterrcnn.cli.common import CLIError, add_model_options, check_output, start_processes
from fasterrcnn.cli.dataset_options import add_dataset_options
from fasterrcnn.cli.slice_options import add_slice_options, slice_options
from fasterrcnn.data.dataset_files import EVAL_SPLIT, names_its_images
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.evaluation.coco_metrics import CocoMetrics
from fasterrcnn.evaluation.dataset_run import load_eval_set
from fasterrcnn.evaluation.evaluate import EvaluationRun, evaluate_results_file, evaluate_set
from fasterrcnn.evaluation.report.plots import check_plotting
from fasterrcnn.evaluation.report.writer import ReportError, ReportOptions, deploy_line


def add_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="COCO bbox evaluation of a model, or of a results file",
        description="Run a model on a dataset (COCO, Pascal VOC or YOLO) and evaluate it with "
        "pycocotools' COCO metrics; or evaluate an existing --results file.",
    )
    add_dataset_options(evaluate, default_split=EVAL_SPLIT)
    evaluate.add_argument(
        "--results",
        metavar="FILE",
        help="COCO results JSON to write (when a model runs) or to evaluate (an existing file "
        "and no --model/--weights; --images then serves the report's drawings)",
    )
    evaluate.add_argument(
        "--metrics", metavar="FILE", help="write the metrics as JSON to this file"
    )
    evaluate.add_argument(
        "--max-images", type=int, metavar="N", help="evaluate the first N images only"
    )
    evaluate.add_argument(
        "--allow-missing",
        action="store_true",
        help="evaluate the images present when some listed ones are not in --images",
    )
    evaluate.add_argument(
        "--evaluator",
        choices=("pycocotools", "faster-coco-eval"),
        default="pycocotools",
        help="COCO evaluation implementation (default pycocotools)",
    )
    report = evaluate.add_argument_group("report")
    report.add_argument(
        "--report", metavar="DIR", help="write the evaluation report (index.html, curves, "
        "confusion matrix, deploy threshold, errors by kind, worst images) into DIR",
    )  # fmt: skip
    report.add_argument(
        "--report-iou", type=float, default=0.5, metavar="IOU",
        help="IoU of the report's confusion matrix and errors (default 0.5)",
    )  # fmt: skip
    report.add_argument(
        "--report-score", type=float, metavar="SCORE",
        help="score threshold of the report's confusion matrix, errors and worst images "
        "(default: the deploy threshold, the best F1's)",
    )  # fmt: skip
    report.add_argument(
        "--report-images", type=int, default=24, metavar="N",
        help="how many of the images with the most errors the report draws (default 24)",
    )  # fmt: skip
    add_model_options(evaluate)
    add_backend_option(evaluate)
    add_slice_options(evaluate)
    evaluate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_output(args.metrics, "--metrics")
    if (
        args.evaluator == "faster-coco-eval"
        and importlib.util.find_spec("faster_coco_eval") is None
    ):
        raise CLIError(
            "--evaluator faster-coco-eval needs its package: pip install faster-coco-eval"
        )
    report = _report_options(args)
    slicing = slice_options(args)
    dataset_options = {"format": args.format, "split": args.split, "classes": args.classes}
    if _results_mode(args):
        try:
            run = evaluate_results_file(
                args.annotations, args.results, args.evaluator, images=args.images,
                report=report, deploy=True, **dataset_options,
            )  # fmt: skip
        except (DatasetError, OSError, ImportError, ValueError) as err:
            raise CLIError(str(err)) from None
        _print_run(run, args.metrics)
        return 0
    if args.images is None and not names_its_images(args.annotations, args.format):
        raise CLIError("give --images DIR to run a model, or --results FILE to evaluate")
    if args.max_images is not None and args.max_images < 1:
        raise CLIError(f"--max-images must be at least 1, not {args.max_images}")
    check_output(args.results, "--results")
    context, device = start_processes(args.device)
    try:
        eval_set = load_eval_set(
            args.annotations, args.images, args.max_images, args.allow_missing,
            **dataset_options,
        )  # fmt: skip
    except DatasetError as err:
        raise CLIError(str(err)) from None
    model = load_detector(args, device)
    try:
        run = evaluate_set(
            model, eval_set, batch_size=args.batch_size, workers=args.workers,
            results_file=args.results, backend=args.evaluator, report=report, slicing=slicing,
            deploy=True,
        )  # fmt: skip
    except (DatasetError, OSError, ImportError) as err:
        raise CLIError(str(err)) from None
    if context.is_main:
        seconds = run.inference_seconds
        print(f"inference: {run.images_run} images in {seconds:.1f} s "
              f"({run.images_run / seconds:.2f} images/s, {run.processes} process(es))")  # fmt: skip
        _print_run(run, args.metrics)
    return 1 if run.failures else 0


def _results_mode(args: argparse.Namespace) -> bool:
    """Whether ``--results`` is a file to evaluate rather than one to write: an existing file
    with no ``--model``/``--weights``/``--backend`` (``--images`` then only serves the
    report's drawings), or any ``--results`` without ``--images`` for a dataset that needs
    them."""
    if args.results is None:
        return False
    no_model = args.model is None and args.weights is None and args.backend == "pytorch"
    if no_model and Path(args.results).is_file():
        return True
    return args.images is None and not names_its_images(args.annotations, args.format)


def _report_options(args: argparse.Namespace) -> ReportOptions | None:
    """The checked report options, or a one-line error before any work."""
    if args.report is None:
        return None
    options = ReportOptions(
        Path(args.report), args.report_iou, args.report_score, args.report_images
    )
    try:
        options.check()
        check_plotting()
    except (ReportError, ImportError) as err:
        raise CLIError(f"--report: {err}") from None
    return options


def _print_run(run: EvaluationRun, metrics_file: str | None) -> None:
    """The metrics, the deploy threshold and the report's place (or why there is none)."""
    _print_metrics(run.metrics, metrics_file, run.evaluation_seconds)
    if run.deploy is not None or run.report is not None:
        print(deploy_line(run.deploy))
    if run.report is not None:
        for line in run.report.skipped:
            print(line)
        print(f"report: {run.report.page} in {run.report_seconds:.2f} s")
    if run.report_error is not None:
        raise CLIError(f"--report: {run.report_error}")


def _print_metrics(metrics: CocoMetrics, metrics_file: str | None, seconds: float) -> None:
    print(metrics.summary.rstrip())
    print("per-category AP:")
    print(metrics.table())
    print(
        f"evaluation: {metrics.num_images} images, {metrics.num_detections} detections "
        f"in {seconds:.2f} s"
    )
    if metrics_file is not None:
        try:
            Path(metrics_file).write_text(json.dumps(metrics.to_dict(), indent=1) + "\n")
        except OSError as err:
            raise CLIError(str(err)) from None
