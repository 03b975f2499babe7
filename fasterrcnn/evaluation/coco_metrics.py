"""COCO bbox evaluation of detection results with pycocotools (or faster-coco-eval).

Results are a float64 array ``(M, 7)``: ``[image_id, x, y, w, h, score, category_id]``
(boxes in original-image pixels, dataset category ids), pycocotools' numpy results layout;
:mod:`fasterrcnn.evaluation.results_json` reads and writes them as COCO results JSON.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.evaluation.results_json import results_to_json

Backend = Literal["pycocotools", "faster-coco-eval"]
STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


@dataclass
class CategoryAP:
    """AP@[.5:.95] and AP50 of one category (area all, 100 detections per image).

    The APs are None where the category has no ground truth in the evaluated images;
    ``instances`` counts its non-crowd ground-truth boxes there.
    """

    category_id: int
    name: str
    ap: float | None
    ap50: float | None
    instances: int


@dataclass
class CocoMetrics:
    """pycocotools' 12 bbox ``stats`` (fractions, -1.0 where undefined), per-category AP in
    category id order, the summary text pycocotools prints, and what was evaluated
    (``num_detections`` counts the results on the evaluated images)."""

    stats: dict[str, float]
    per_category: list[CategoryAP]
    summary: str
    num_images: int
    num_detections: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the 12 stats in ``STAT_NAMES`` order, then ``per_category``."""
        out: dict[str, Any] = {name: _json_float(self.stats[name]) for name in STAT_NAMES}
        out["per_category"] = [
            {
                "category_id": c.category_id,
                "name": c.name,
                "AP": _json_float(c.ap),
                "AP50": _json_float(c.ap50),
                "instances": c.instances,
            }
            for c in self.per_category
        ]
        return out

    def table(self, columns: int = 3) -> str:
        """Per-category AP in percent, ``columns`` (name, AP) pairs a row; "-" for None."""
        width = max([len("category"), *(len(c.name) for c in self.per_category)])
        cells = [
            f"{c.name:<{width}} {'-' if c.ap is None else f'{100 * c.ap:.1f}':>5}"
            for c in self.per_category
        ]
        header = f"{'category':<{width}} {'AP':>5}"
        rows = ["   ".join(cells[i : i + columns]) for i in range(0, len(cells), columns)]
        return "\n".join(["   ".join([header] * max(1, min(columns, len(cells)))), *rows])


def _json_float(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def check_results(dataset: CocoDataset, results: np.ndarray) -> np.ndarray:
    """``results`` as a float (M, 7) array whose images and categories are the dataset's;
    a one-line ValueError otherwise."""
    results = np.asarray(results, dtype=np.float64)
    if results.size == 0:
        return results.reshape(0, 7)
    if results.ndim != 2 or results.shape[1] != 7:
        raise ValueError(f"results must have shape (M, 7), not {results.shape}")
    if not np.isfinite(results).all():
        raise ValueError("results hold NaN or infinite values")
    unknown_images = set(results[:, 0].tolist()) - {image.id for image in dataset.images}
    if unknown_images:
        raise ValueError(f"results name images not in the dataset: {sorted(unknown_images)[:5]}")
    unknown_categories = set(results[:, 6].tolist()) - set(dataset.classes.category_ids)
    if unknown_categories:
        raise ValueError(f"results name unknown categories: {sorted(unknown_categories)[:5]}")
    return results


def _backend(backend: str) -> tuple[Any, Any]:
    """The (COCO, COCOeval) classes of ``backend``."""
    if backend == "pycocotools":
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        except ImportError:
            raise ImportError(
                "COCO evaluation needs pycocotools: pip install pycocotools"
            ) from None
        return COCO, COCOeval
    if backend == "faster-coco-eval":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError:
            raise ImportError(
                "backend 'faster-coco-eval' needs its package: pip install faster-coco-eval"
            ) from None
        return COCO, COCOeval_faster
    raise ValueError(f"unknown backend {backend!r}: 'pycocotools' or 'faster-coco-eval'")


def run_cocoeval(
    dataset: CocoDataset,
    results: np.ndarray,
    image_ids: list[int],
    backend: str = "pycocotools",
) -> tuple[Any, str]:
    """The accumulated COCOeval object and its summary text; nothing is printed."""
    coco_class, eval_class = _backend(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = coco_class()
        ground_truth.dataset = dataset.coco_dict()
        ground_truth.createIndex()
        if len(results):
            detections = ground_truth.loadRes(results_to_json(results))
        else:  # pycocotools' loadRes fails on an empty list
            detections = coco_class()
            detections.dataset = {
                "images": list(ground_truth.dataset["images"]),
                "categories": [dict(c) for c in ground_truth.dataset["categories"]],
                "annotations": [],
            }
            detections.createIndex()
        evaluator = eval_class(ground_truth, detections, iouType="bbox")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        if backend == "faster-coco-eval":  # it logs the summary unless told to print it
            evaluator.print_function = print
        evaluator.summarize()
    # faster-coco-eval adds AR50 and AR75 lines after pycocotools' 12; keep those 12.
    lines = printed.getvalue().splitlines(keepends=True)[: len(STAT_NAMES)]
    return evaluator, "".join(lines)


def keeps_matches(evaluator: Any) -> bool:
    """Whether ``evaluator`` keeps pycocotools' per-image matches (``evalImgs``, a list);
    faster-coco-eval keeps them in C++ only."""
    return isinstance(getattr(evaluator, "evalImgs", None), list)


def _per_category(dataset: CocoDataset, evaluator: Any, image_ids: list[int]) -> list[CategoryAP]:
    params = evaluator.params
    precision = np.asarray(evaluator.eval["precision"])  # [iou, recall, category, area, maxdets]
    area = list(params.areaRngLbl).index("all")
    max_dets = list(params.maxDets).index(100)
    iou50 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    column = {int(category_id): k for k, category_id in enumerate(params.catIds)}
    instances: Counter[int] = Counter(
        a["category_id"]
        for image_id in image_ids
        for a in dataset.annotations(image_id)
        if not a.get("iscrowd")
    )
    out = []
    for category_id, name in zip(dataset.classes.category_ids, dataset.classes.names, strict=True):
        p = precision[:, :, column[category_id], area, max_dets]
        p50 = p[iou50]
        out.append(
            CategoryAP(
                category_id=category_id,
                name=name,
                ap=float(p[p > -1].mean()) if (p > -1).any() else None,
                ap50=float(p50[p50 > -1].mean()) if (p50 > -1).any() else None,
                instances=instances[category_id],
            )
        )
    return out


def evaluate_results(
    dataset: CocoDataset,
    results: np.ndarray,
    image_ids: Sequence[int] | None = None,
    backend: Backend = "pycocotools",
) -> CocoMetrics:
    """COCO bbox evaluation of ``results`` on ``image_ids`` (default: every image).

    ``backend="faster-coco-eval"`` uses that package's C++ evaluator. Its precision is
    ``tp / (tp + fp)`` where pycocotools' is ``tp / (tp + fp + np.spacing(1))``; they differ
    only where a single detection counts so far and it is a true positive (1.0 against
    ``1 - 2**-52``), so stats and APs agree to about 1e-16 and the summary text is the same.
    """
    return coco_evaluation(dataset, results, image_ids, backend)[0]


def coco_evaluation(
    dataset: CocoDataset,
    results: np.ndarray,
    image_ids: Sequence[int] | None = None,
    backend: Backend = "pycocotools",
) -> tuple[CocoMetrics, Any]:
    """:func:`evaluate_results` and the accumulated evaluator it ran (pycocotools' COCOeval,
    or faster-coco-eval's), for what reads the evaluation's own matches and curves."""
    results = check_results(dataset, results)
    if image_ids is None:
        evaluated = sorted(image.id for image in dataset.images)
    else:
        evaluated = sorted({int(i) for i in image_ids})
        known = {image.id for image in dataset.images}
        unknown = [i for i in evaluated if i not in known]
        if unknown:
            raise ValueError(f"image_ids name images not in the dataset: {unknown[:5]}")
        if not evaluated:
            raise ValueError("no images to evaluate: image_ids is empty")
    evaluator, summary = run_cocoeval(dataset, results, evaluated, backend)
    stats = [float(v) for v in evaluator.stats[: len(STAT_NAMES)]]
    on_evaluated = np.isin(results[:, 0], evaluated)
    metrics = CocoMetrics(
        stats=dict(zip(STAT_NAMES, stats, strict=True)),
        per_category=_per_category(dataset, evaluator, evaluated),
        summary=summary,
        num_images=len(evaluated),
        num_detections=int(on_evaluated.sum()),
    )
    return metrics, evaluator
