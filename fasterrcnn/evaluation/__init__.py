"""COCO evaluation: metrics with pycocotools, the results JSON, and :func:`evaluate`."""

from fasterrcnn.evaluation.coco_metrics import CocoMetrics, evaluate_results
from fasterrcnn.evaluation.dataset_run import EvalSet, load_eval_set
from fasterrcnn.evaluation.evaluate import (
    EvaluationRun,
    evaluate,
    evaluate_results_file,
    evaluate_set,
)

__all__ = [
    "CocoMetrics",
    "EvalSet",
    "EvaluationRun",
    "evaluate",
    "evaluate_results",
    "evaluate_results_file",
    "evaluate_set",
    "load_eval_set",
]
