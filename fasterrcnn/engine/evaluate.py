"""COCO evaluation of a model: inference over a dataset's images (sharded across processes),
one gather to rank 0, then pycocotools.

Results are those of the model's own post-processing (no extra score threshold), as xywh
boxes in original-image pixels with the dataset's category ids.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fasterrcnn.data.class_mapping import ClassMapping
from fasterrcnn.data.coco import CocoDataset, DatasetError
from fasterrcnn.engine.coco_evaluator import (
    Backend,
    CocoMetrics,
    evaluate_results,
    results_from_detections,
    write_results,
)
from fasterrcnn.engine.distributed import broadcast_from_main, current_context, gather_to_main
from fasterrcnn.engine.inference import run_inference
from fasterrcnn.modeling.faster_rcnn import FasterRCNN

logger = logging.getLogger("fasterrcnn")


@dataclass
class DatasetDetections:
    """What a run over a dataset found: ``results`` (M, 7) ``[image_id, x, y, w, h, score,
    category_id]`` in dataset order, the ids of the images run, and one line per image that
    could not be read."""

    results: np.ndarray
    image_ids: list[int]
    failures: list[str] = field(default_factory=list)


def select_images(
    dataset: CocoDataset, max_images: int | None = None, allow_missing: bool = False
) -> list[int]:
    """Indices of the images to run: the first ``max_images``, without the files that are not
    on disk when ``allow_missing`` (else that is an error)."""
    if max_images is not None and max_images < 1:
        raise DatasetError(f"max_images must be at least 1, not {max_images}")
    selected = range(len(dataset) if max_images is None else min(max_images, len(dataset)))
    missing = set(dataset.missing_images()).intersection(selected)
    if missing and not allow_missing:
        first = dataset.images[min(missing)].file_name
        raise DatasetError(
            f"{len(missing)} of the {len(selected)} images to evaluate are not in "
            f"{dataset.image_root} (first: {first}); pass --allow-missing (allow_missing=True) "
            f"to evaluate the other {len(selected) - len(missing)}"
        )
    indices = [i for i in selected if i not in missing]
    if not indices:
        raise DatasetError(f"none of the {len(selected)} images is in {dataset.image_root}")
    if missing:
        logger.warning(
            "%d of %d images are missing from %s; evaluating the other %d",
            len(missing), len(selected), dataset.image_root, len(indices),
        )  # fmt: skip
    return indices


def class_mapping(model: FasterRCNN, dataset: CocoDataset) -> ClassMapping:
    """The model's classes matched to the dataset's categories; an error when none match."""
    mapping = ClassMapping.between(model.config.classes, dataset.classes)
    if mapping.matches_nothing:
        raise DatasetError(
            f"none of the dataset's {len(dataset.classes)} categories is a class of the model "
            "(by id or name); evaluate a model trained on these categories"
        )
    return mapping


def detect_dataset(
    model: FasterRCNN,
    dataset: CocoDataset,
    indices: list[int],
    mapping: ClassMapping,
    *,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = False,
) -> DatasetDetections | None:
    """Run ``model`` on ``dataset``'s images ``indices``, each process on its shard; the whole
    run's detections on rank 0 (None on the other ranks)."""
    context = current_context()
    paths = [dataset.image_path(i) for i in indices]
    per_image: list[tuple[int, np.ndarray]] = []
    failures: list[tuple[int, str]] = []
    shard_size = len(range(context.rank, len(paths), context.world_size))
    bar = tqdm(
        total=shard_size,
        unit="img",
        file=sys.stderr,
        disable=not progress or not context.is_main,
        desc="eval" if context.world_size == 1 else f"eval (rank 0 of {context.world_size})",
    )
    with bar:
        for result in run_inference(
            model,
            paths,
            batch_size=batch_size,
            workers=workers,
            rank=context.rank,
            world_size=context.world_size,
        ):
            bar.update()
            if result.detections is None:
                failures.append((result.index, str(result.error)))
                bar.write(f"fasterrcnn: skipped: {result.error}", file=sys.stderr)
                continue
            dets = result.detections
            image_id = dataset.images[indices[result.index]].id
            category_ids = mapping.dataset_ids(dets.category_ids)
            kept = category_ids >= 0
            rows = results_from_detections(
                image_id, dets.boxes[kept], dets.scores[kept], category_ids[kept]
            )
            per_image.append((result.index, rows))
    gathered = gather_to_main((per_image, failures))
    if gathered is None:
        return None
    images = sorted((item for part, _ in gathered for item in part), key=lambda x: x[0])
    failed = sorted((item for _, part in gathered for item in part), key=lambda x: x[0])
    results = np.concatenate([rows for _, rows in images]) if images else np.zeros((0, 7))
    image_ids = [dataset.images[indices[position]].id for position, _ in images]
    return DatasetDetections(results, image_ids, [message for _, message in failed])


def evaluate(
    model: FasterRCNN,
    images: str | Path,
    annotations: str | Path,
    *,
    batch_size: int = 1,
    workers: int = 0,
    max_images: int | None = None,
    allow_missing: bool = False,
    results_file: str | Path | None = None,
    backend: Backend = "pycocotools",
    progress: bool = True,
) -> CocoMetrics:
    """COCO bbox metrics of ``model`` on the images of folder ``images`` listed in the
    instances file ``annotations``.

    Under ``torchrun`` (a process group joined with
    :func:`fasterrcnn.engine.distributed.init_distributed`) each process runs its shard and
    every process returns the same metrics. ``results_file`` also writes the COCO results JSON.
    Images that cannot be read are logged and left out of the evaluation. ``progress`` shows
    a progress bar (images/s, ETA) on stderr.
    """
    dataset = CocoDataset.load(annotations, images)
    indices = select_images(dataset, max_images, allow_missing)
    mapping = class_mapping(model, dataset)
    if (note := mapping.note()) and current_context().is_main:
        logger.warning("%s", note)
    found = detect_dataset(
        model, dataset, indices, mapping, batch_size=batch_size, workers=workers,
        progress=progress,
    )  # fmt: skip
    outcome: CocoMetrics | DatasetError | None = None
    if found is not None:
        try:
            outcome = evaluate_found(dataset, found, results_file, backend)
        except DatasetError as err:
            outcome = err
    outcome = broadcast_from_main(outcome)
    if isinstance(outcome, DatasetError):
        raise outcome
    assert outcome is not None
    return outcome


def evaluate_found(
    dataset: CocoDataset,
    found: DatasetDetections,
    results_file: str | Path | None = None,
    backend: Backend = "pycocotools",
) -> CocoMetrics:
    """Write ``found``'s results (when ``results_file`` is given) and evaluate them on the
    images that were read."""
    if not found.image_ids:
        raise DatasetError(f"none of the {len(found.failures)} images could be read")
    if found.failures:
        logger.warning(
            "%d image(s) could not be read and are left out of the evaluation",
            len(found.failures),
        )
    if results_file is not None:
        write_results(results_file, found.results)
    return evaluate_results(dataset, found.results, found.image_ids, backend=backend)
