"""The inference loop every command shares: sources -> loaded images -> size-grouped batches
-> the network -> per-image results, in input order and in bounded memory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from fasterrcnn.data.image_loader import (
    CHUNK_SIZE,
    ImageSource,
    LoadedImage,
    LoadFailure,
    LoadRecord,
    load_images,
)
from fasterrcnn.data.images import ImageError
from fasterrcnn.data.transforms import batch_images, normalize_pixels, padded_size
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.memory import prepare_allocator, release_free_memory
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.inference.size_groups import group_by_key
from fasterrcnn.modeling.faster_rcnn import size_tensor
from fasterrcnn.modeling.rpn import Proposals


@dataclass
class ImageResult:
    """The outcome for one source: its detections, or the error that kept it from being read.

    ``index``: the source's position in the input; ``image``: the decoded RGB image when
    ``keep_images`` was asked for.
    """

    index: int
    source: str | None
    detections: Detections | None = None
    error: ImageError | None = None
    image: np.ndarray | None = None


def run_inference(
    model: BatchDetector,
    sources: Iterable[ImageSource],
    *,
    batch_size: int = 1,
    workers: int = 0,
    channels: str = "RGB",
    score_threshold: float | None = None,
    return_proposals: bool = False,
    keep_images: bool = False,
    rank: int = 0,
    world_size: int = 1,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[ImageResult]:
    """One :class:`ImageResult` per source of this process's shard, in input order.

    Images are decoded and resized in ``workers`` ``DataLoader`` processes and run in batches
    of at most ``batch_size`` images of the same padded size, so that every image gets exactly
    its single-image result. ``score_threshold`` (optional) drops detections below it after
    the model's own post-processing. An iterable without a length is read ``chunk_size``
    sources at a time.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    if return_proposals and not model.returns_proposals:
        raise ValueError("an exported model returns detections only, not proposals")
    prepare_allocator()  # freed feature maps are reused without page faults (or returned)
    cfg = model.config.input
    records = load_images(
        sources,
        cfg,
        channels=channels,
        workers=workers,
        keep_images=keep_images,
        rank=rank,
        world_size=world_size,
        pin_memory=model.device.type == "cuda",
        chunk_size=chunk_size,
    )

    def size_of(item: tuple[int, LoadRecord]) -> tuple[int, int] | None:
        record = item[1]
        return None if isinstance(record, LoadFailure) else padded_size(*record.original_size, cfg)

    done: dict[int, ImageResult] = {}
    next_out = 0
    for group in group_by_key(enumerate(records), size_of, batch_size):
        for arrival, result in _run_group(model, group, score_threshold, return_proposals):
            done[arrival] = result
        release_free_memory()  # bounds the memory a long run keeps
        while next_out in done:
            yield done.pop(next_out)
            next_out += 1


def _run_group(
    model: BatchDetector,
    group: list[tuple[int, LoadRecord]],
    score_threshold: float | None,
    return_proposals: bool,
) -> list[tuple[int, ImageResult]]:
    failures = [(n, r) for n, r in group if isinstance(r, LoadFailure)]
    if failures:
        return [(n, ImageResult(r.index, r.source, error=r.error)) for n, r in failures]
    images: list[LoadedImage] = [r for _, r in group]  # type: ignore[misc]
    cfg = model.config.input
    inputs = [
        normalize_pixels(x.pixels.to(model.device, non_blocking=True), x.image_size, cfg)
        for x in images
    ]
    tensor = batch_images(inputs, cfg)
    image_sizes = size_tensor([x.image_size for x in images], tensor.device)
    original_sizes = size_tensor([x.original_size for x in images], tensor.device)
    with torch.inference_mode():
        detections, batch_proposals = model.detect_batch(
            tensor, image_sizes, original_sizes, proposals=return_proposals
        )
    proposals: list[Proposals | None] = [None] * len(images)
    if batch_proposals is not None:
        proposals = list(batch_proposals.per_image(len(images)))
    per_image = detections.per_image(len(images))
    results = []
    for (arrival, _), image, dets, image_proposals in zip(
        group, images, per_image, proposals, strict=True
    ):
        numpy_dets = Detections.from_tensors(
            dets,
            model.config.classes,
            image.original_size,
            source=image.source,
            proposals=image_proposals,
            score_threshold=score_threshold,
        )
        results.append(
            (arrival, ImageResult(image.index, image.source, numpy_dets, None, image.image))
        )
    return results
