"""A model run over a dataset's images for evaluation: which images, how the model's classes
map to the dataset's categories, and the detections as COCO results rows.

Under ``torchrun`` each process runs its shard of the images and rank 0 gathers the whole
run's detections once. Results are those of the model's own post-processing (no extra score
threshold), as xywh boxes in original-image pixels with the dataset's category ids.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fasterrcnn.data.class_mapping import ClassMapping
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.dataset_files import EVAL_SPLIT, load_dataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.distributed import current_context, gather_to_main
from fasterrcnn.evaluation.results_json import results_from_detections
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.inference.slicing import SliceOptions, run_images

logger = logging.getLogger("fasterrcnn")


@dataclass
class EvalSet:
    """The images of ``dataset`` to evaluate on: their ``indices`` in it."""

    dataset: CocoDataset
    indices: list[int]


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


def load_eval_set(
    annotations: str | Path,
    images: str | Path | None = None,
    max_images: int | None = None,
    allow_missing: bool = False,
    *,
    format: str | None = None,
    split: str | None = None,
    classes: str | Path | None = None,
) -> EvalSet:
    """The dataset at ``annotations`` in any format (a YOLO dataset's ``val`` split unless
    ``split`` names another; see :func:`~fasterrcnn.data.dataset_files.load_dataset`) and the
    images to run (see :func:`select_images`); a :class:`DatasetError` names any problem."""
    dataset = load_dataset(
        annotations, images, format=format, split=split, classes=classes,
        default_split=EVAL_SPLIT,
    )  # fmt: skip
    if dataset.image_root is None:
        raise DatasetError(f"{annotations}: give the image folder (images=...)")
    log_load_report(dataset)
    return EvalSet(dataset, select_images(dataset, max_images, allow_missing))


def log_load_report(dataset: CocoDataset) -> None:
    """A warning per box, file or image the dataset's reader repaired or left out."""
    if current_context().is_main:
        for line in dataset.report.lines():
            logger.warning("%s: %s", dataset.source, line)


def class_mapping(model: BatchDetector, dataset: CocoDataset) -> ClassMapping:
    """The model's classes matched to the dataset's categories; an error when none match."""
    mapping = ClassMapping.between(model.config.classes, dataset.classes)
    if mapping.matches_nothing:
        raise DatasetError(
            f"none of the dataset's {len(dataset.classes)} categories is a class of the model "
            "(by id or name); evaluate a model trained on these categories"
        )
    return mapping


def detect_dataset(
    model: BatchDetector,
    dataset: CocoDataset,
    indices: list[int],
    mapping: ClassMapping,
    *,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = False,
    slicing: SliceOptions | None = None,
) -> DatasetDetections | None:
    """Run ``model`` on ``dataset``'s images ``indices`` (as tiles with ``slicing``), each
    process on its shard; the whole run's detections on rank 0 (None on the other ranks)."""
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
        for result in run_images(
            model, paths, slicing, batch_size=batch_size, workers=workers,
            rank=context.rank, world_size=context.world_size,
        ):  # fmt: skip
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
