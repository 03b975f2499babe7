"""COCO bbox evaluation of detection results, and the COCO results JSON format.

Results are a float64 array ``(M, 7)``: ``[image_id, x, y, w, h, score, category_id]``
(boxes in original-image pixels, dataset category ids), pycocotools' numpy results layout.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fasterrcnn.data.coco import (
    CocoDataset,
    DatasetError,
    Tally,
    is_box,
    is_int,
    is_number,
    kind,
    read_json,
)

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


def _round(values: np.ndarray, digits: int) -> list[float]:
    # Python's round (correctly rounded), as the project's JSON output uses everywhere.
    return [round(v, digits) for v in values.ravel().tolist()]


def results_from_detections(
    image_id: int, boxes_xyxy: np.ndarray, scores: np.ndarray, category_ids: np.ndarray
) -> np.ndarray:
    """One image's detections as results rows: xyxy -> xywh in float64, boxes rounded to
    3 decimals and scores to 5 (the project's JSON precision)."""
    boxes = np.asarray(boxes_xyxy).astype(np.float64).reshape(-1, 4)
    scores = np.asarray(scores).astype(np.float64).reshape(-1)
    category_ids = np.asarray(category_ids).reshape(-1)
    if not len(boxes) == len(scores) == len(category_ids):
        raise ValueError(
            f"{len(boxes)} boxes, {len(scores)} scores and {len(category_ids)} category ids"
        )
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    out = np.empty((len(boxes), 7), dtype=np.float64)
    out[:, 0] = image_id
    out[:, 1:5] = np.array(_round(xywh, 3), dtype=np.float64).reshape(-1, 4)
    out[:, 5] = _round(scores, 5)
    out[:, 6] = category_ids
    return out


def _iter_json(results: np.ndarray) -> Iterator[dict[str, Any]]:
    for row in np.asarray(results, np.float64).reshape(-1, 7):
        image_id, x, y, w, h, score, category_id = row.tolist()
        yield {
            "image_id": int(image_id),
            "category_id": int(category_id),
            "bbox": [x, y, w, h],
            "score": score,
        }


def results_to_json(results: np.ndarray) -> list[dict[str, Any]]:
    """The COCO results list (ints for ids, the array's floats unchanged)."""
    return list(_iter_json(results))


def write_results(path: str | Path, results: np.ndarray) -> None:
    """Write the COCO results JSON, entry by entry, atomically (temp file + ``os.replace``)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temporary.open("x", encoding="utf-8") as file:
            file.write("[")
            for i, entry in enumerate(_iter_json(results)):
                file.write(",\n" if i else "\n")
                file.write(json.dumps(entry, allow_nan=False))
            file.write("\n]\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_results(path: str | Path, dataset: CocoDataset) -> np.ndarray:
    """Read and validate a COCO results JSON for ``dataset``: the (M, 7) results array."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise DatasetError(f"{path}: top level is {kind(data)}, not a list of detections")
    image_ids = {image.id for image in dataset.images}
    category_ids = set(dataset.classes.category_ids)
    unknown_images, unknown_categories = Tally(), Tally()
    results = np.empty((len(data), 7), dtype=np.float64)
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: entry {i} is {kind(entry)}, not an object")
        for key, valid, what in (
            ("image_id", is_int, "an integer"),
            ("category_id", is_int, "an integer"),
            ("bbox", is_box, "4 numbers"),
            ("score", is_number, "a number"),
        ):
            if key not in entry:
                raise DatasetError(f"{path}: entry {i} has no {key!r}")
            if not valid(entry[key]):
                raise DatasetError(f"{path}: entry {i} has {key} {entry[key]!r}, not {what}")
        image_id, category_id, bbox = entry["image_id"], entry["category_id"], entry["bbox"]
        if bbox[2] < 0 or bbox[3] < 0:
            raise DatasetError(f"{path}: entry {i} has a negative bbox width or height {bbox}")
        known = image_id in image_ids and category_id in category_ids
        if image_id not in image_ids:
            unknown_images.add(f"entry {i} -> image_id {image_id}")
        if category_id not in category_ids:
            unknown_categories.add(f"entry {i} -> category_id {category_id}")
        if known:
            results[i] = (image_id, *bbox, entry["score"], category_id)
    for tally, what in ((unknown_images, "images"), (unknown_categories, "categories")):
        if tally.count:
            raise DatasetError(f"{path}: {tally.problem('detection', what)}")
    return results


def _check_results(dataset: CocoDataset, results: np.ndarray) -> np.ndarray:
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


def _run_cocoeval(
    dataset: CocoDataset, results: np.ndarray, image_ids: list[int], backend: str
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
    results = _check_results(dataset, results)
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
    evaluator, summary = _run_cocoeval(dataset, results, evaluated, backend)
    stats = [float(v) for v in evaluator.stats[: len(STAT_NAMES)]]
    on_evaluated = np.isin(results[:, 0], evaluated)
    return CocoMetrics(
        stats=dict(zip(STAT_NAMES, stats, strict=True)),
        per_category=_per_category(dataset, evaluator, evaluated),
        summary=summary,
        num_images=len(evaluated),
        num_detections=int(on_evaluated.sum()),
    )
