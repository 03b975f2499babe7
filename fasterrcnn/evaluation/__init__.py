"""COCO evaluation: metrics with pycocotools, the results JSON, :func:`evaluate`, and the
report a person reads (:func:`write_report`)."""

from fasterrcnn.evaluation.coco_metrics import CocoMetrics, evaluate_results
from fasterrcnn.evaluation.dataset_run import EvalSet, load_eval_set
from fasterrcnn.evaluation.evaluate import (
    EvaluationRun,
    evaluate,
    evaluate_results_file,
    evaluate_set,
)
from fasterrcnn.evaluation.report import ReportOptions, write_report

__all__ = [
    "CocoMetrics",
    "EvalSet",
    "EvaluationRun",
    "ReportOptions",
    "evaluate",
    "evaluate_results",
    "evaluate_results_file",
    "evaluate_set",
    "load_eval_set",
    "write_report",
]
