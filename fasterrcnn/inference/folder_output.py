"""Detection over image files into a folder, as ``fasterrcnn detect`` writes it: per image
``NAME.jpg`` (a copy with the boxes, class names and scores drawn) and ``NAME.json`` (its
detections), sharded across the processes of a ``torchrun`` job; optionally all the
detections as a dataset (see :mod:`~fasterrcnn.inference.label_output`), written once."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fasterrcnn.data.conversion_report import unique_stems
from fasterrcnn.data.images import ImageError
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.distributed import broadcast_from_main, current_context, gather_to_main
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.drawing import draw_detections
from fasterrcnn.inference.label_output import (
    LabelRecord,
    check_label_formats,
    label_record,
    write_detection_labels,
)
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.inference.slicing import SliceOptions, run_images

logger = logging.getLogger("fasterrcnn")


@dataclass(frozen=True)
class FolderRun:
    """What a run wrote, over all processes: images done, images that could not be read,
    detections written, the wall time per image done (of the slowest process) and the
    dataset files or folders of ``save_labels``."""

    images: int
    failed: int
    detections: int
    seconds_per_image: float
    labels: tuple[Path, ...] = ()


def output_stems(paths: list[Path]) -> list[str]:
    """Output file stems, one per path: the file's stem, numbered when it repeats."""
    return unique_stems(path.name for path in paths)


def write_outputs(out: Path, stem: str, detections: Detections, image: np.ndarray | None) -> None:
    """``out/stem.jpg`` with ``detections`` drawn on ``image`` (unless it is None) and
    ``out/stem.json``; an ``OSError`` when either cannot be written."""
    if image is not None and not cv2.imwrite(
        str(out / f"{stem}.jpg"), draw_detections(image, detections)
    ):
        raise OSError(f"cannot write {out / stem}.jpg")
    (out / f"{stem}.json").write_text(json.dumps(detections.to_dict(), indent=1) + "\n")


def detect_into_folder(
    model: BatchDetector,
    paths: list[Path],
    out: Path,
    *,
    batch_size: int = 1,
    workers: int = 0,
    score_threshold: float | None = None,
    draw: bool = True,
    progress: bool = True,
    on_error: Callable[[ImageError], None] | None = None,
    save_labels: Sequence[str] = (),
    slicing: SliceOptions | None = None,
) -> FolderRun:
    """Detect objects in ``paths`` and write each image's outputs into the folder ``out``.

    Under ``torchrun`` each process runs its shard; every process returns the totals of the
    whole run. An image that cannot be read is passed to ``on_error`` (by default logged as
    a one-line warning) and skipped; an output that cannot be written is an ``OSError``.
    ``progress`` shows a bar on stderr (from two images on, on the main process).

    ``save_labels``: dataset formats (``coco``, ``voc``, ``yolo``, ``labelstudio``) in which
    the detections of the images read are written into ``out`` too, by the main process once
    it has gathered them all; a problem writing them is a :class:`DatasetError` on every
    process. ``slicing``: run each image as tiles (:mod:`~fasterrcnn.inference.slicing`).
    """
    check_label_formats(save_labels)
    context = current_context()
    stems = output_stems(paths)
    failed = done = detections = 0
    records: list[LabelRecord] = []
    start = time.perf_counter()
    shard = range(context.rank, len(paths), context.world_size)
    bar = tqdm(
        total=len(shard), unit="img", file=sys.stderr,
        disable=not progress or len(shard) < 2 or not context.is_main,
    )  # fmt: skip
    with bar:
        for result in run_images(
            model, paths, slicing, batch_size=batch_size, workers=workers,
            score_threshold=score_threshold, keep_images=draw, rank=context.rank,
            world_size=context.world_size,
        ):  # fmt: skip
            bar.update()
            if result.detections is None:
                failed += 1
                assert result.error is not None
                if on_error is None:
                    logger.warning("skipped: %s", result.error)
                else:
                    on_error(result.error)
                continue
            result.detections.source = str(paths[result.index])
            write_outputs(out, stems[result.index], result.detections, result.image)
            if save_labels:
                records.append(label_record(result.index, paths[result.index], result.detections))
            done += 1
            detections += len(result.detections)
    totals = gather_to_main((done, failed, detections, time.perf_counter() - start, records))
    summary: FolderRun | str | None = None
    if totals is not None:
        done = sum(t[0] for t in totals)
        try:
            labels = write_detection_labels(
                (r for t in totals for r in t[4]), model.config.classes, save_labels, out
            )
        except DatasetError as err:  # raised below on every process, not here alone
            summary = str(err)
        else:
            summary = FolderRun(
                images=done,
                failed=sum(t[1] for t in totals),
                detections=sum(t[2] for t in totals),
                seconds_per_image=max(t[3] for t in totals) / max(done, 1),
                labels=tuple(labels),
            )
    summary = broadcast_from_main(summary)
    if isinstance(summary, str):
        raise DatasetError(summary)
    assert summary is not None
    return summary
