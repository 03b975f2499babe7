"""Sliced inference: a large image run as overlapping tiles at full resolution, so that small
objects are not shrunk away by the model's resize, the tiles' detections merged into one set.

Rules:

- Tiles: :func:`tile_windows` lays ``size x size`` windows over the image, row by row, each
  ``size - round(size * overlap)`` pixels after the previous one; the last window of a row
  (column) is moved back to end at the image's border, and a side no longer than ``size`` is
  one window of the whole side.
- Each image is decoded once, in this process (a path through
  :func:`~fasterrcnn.data.images.read_image`); one that cannot be read becomes its result's
  ``error``, as in :func:`~fasterrcnn.inference.loop.run_inference`.
- An image no larger than one tile (``h <= size`` and ``w <= size``) is run once as it is:
  its detections are exactly :func:`~fasterrcnn.inference.loop.run_inference`'s.
- A larger image's tiles are views of it (no pixel is copied before a tile is resized for
  the network), fed lazily to :func:`~fasterrcnn.inference.loop.run_inference` in batches of
  up to ``batch_size`` (the tiles of an image have one size, so they share batches), then,
  with ``whole_image``, the whole image once. Memory is the decoded image and the few network
  inputs the loop holds, whatever the number of tiles.
- ``score_threshold`` drops each input's detections below it before merging, so that a
  dropped box removes nothing.
- A tile's boxes are moved by the tile's ``(x1, y1)`` and clipped to the image. A tile box
  within :data:`~fasterrcnn.inference.tile_merge.CUT_MARGIN` (2) pixels of an edge of its
  tile that is not an image border is *cut*; boxes of the whole-image pass never are.
- All boxes are merged class-wise by :func:`~fasterrcnn.inference.tile_merge.merge_boxes`:
  whole boxes before cut ones, then by score. ``"nms"`` keeps a box unless a kept box of its
  class overlaps it by more than ``merge_iou`` (IoU for a whole box, the covered fraction of
  its area for a cut one); ``"nmm"`` merges into each kept box the later boxes of its class
  whose intersection over the smaller box is at least ``merge_iou``: their enclosing box,
  their highest score.
- The result is sorted by decreasing score; its ``image_size`` is the full image's (h, w)
  and ``source`` the path (None for an array). Proposals are not returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from fasterrcnn.data.image_loader import ImageSource, load_source, source_name
from fasterrcnn.data.images import ImageError
from fasterrcnn.data.shard_sampler import check_int
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.loop import ImageResult, run_inference
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.inference.tile_merge import cut_mask, merge_boxes

MIN_SLICE_SIZE = 64
MAX_OVERLAP = 0.9


@dataclass(frozen=True)
class SliceOptions:
    """How :func:`sliced_inference` tiles and merges.

    ``size``: the tile side in pixels of the original image (at least 64); ``overlap``: the
    fraction of a tile shared with its neighbour, in [0, 0.9); ``whole_image``: also run the
    whole image and merge its detections in; ``merge``: ``"nms"`` or ``"nmm"``;
    ``merge_iou``: in (0, 1], the IoU of NMS or the intersection over the smaller box of NMM.
    """

    size: int
    overlap: float = 0.2
    whole_image: bool = True
    merge: Literal["nms", "nmm"] = "nms"
    merge_iou: float = 0.5

    def check(self) -> None:
        """Raise a one-line ValueError for an option out of range."""
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise ValueError(f"slice size must be an integer, not {self.size!r}")
        if self.size < MIN_SLICE_SIZE:
            raise ValueError(
                f"slice size must be at least {MIN_SLICE_SIZE} pixels, not {self.size}"
            )
        if not 0 <= self.overlap < MAX_OVERLAP:
            raise ValueError(f"slice overlap must be in [0, {MAX_OVERLAP}), not {self.overlap}")
        if self.merge not in ("nms", "nmm"):
            raise ValueError(f"slice merge must be 'nms' or 'nmm', not {self.merge!r}")
        if not 0 < self.merge_iou <= 1:
            raise ValueError(f"slice merge IoU must be in (0, 1], not {self.merge_iou}")


def tile_windows(height: int, width: int, size: int, overlap: float) -> np.ndarray:
    """The tiles of a ``height x width`` image (see the module docstring).

    Returns:
        (T, 4) int64 ``x1, y1, x2, y2`` (exclusive ends), row by row: each window is
        ``size`` wide (high) where the image is at least ``size`` wide (high), else the whole
        width (height); together they cover every pixel, and no two are the same.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be at least 1 x 1, not {height} x {width}")
    if size < 1:
        raise ValueError(f"tile size must be at least 1, not {size}")
    if not 0 <= overlap < 1:
        raise ValueError(f"tile overlap must be in [0, 1), not {overlap}")
    stride = max(size - round(size * overlap), 1)
    rows = [
        (x, y, min(x + size, width), min(y + size, height))
        for y in _starts(height, size, stride)
        for x in _starts(width, size, stride)
    ]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def _starts(length: int, size: int, stride: int) -> list[int]:
    """Window starts along one side: every ``stride`` pixels, the last one ending at the end."""
    if length <= size:
        return [0]
    return [*range(0, length - size, stride), length - size]


def sliced_inference(
    model: BatchDetector,
    images: Iterable[ImageSource],
    options: SliceOptions,
    *,
    batch_size: int = 1,
    channels: str = "RGB",
    score_threshold: float | None = None,
    keep_images: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[ImageResult]:
    """One :class:`~fasterrcnn.inference.loop.ImageResult` per image of this process's shard,
    in input order, with the tiles' detections merged (see the module docstring).

    ``images``: paths or HxWx3 uint8 arrays in ``channels`` order, any iterable; tiles share
    batches of up to ``batch_size``. ``keep_images`` keeps the decoded RGB image in the
    result. With ``world_size > 1`` only the images ``rank, rank + world_size, ...`` are run
    (their ``index`` is still their position in ``images``). Images are decoded one at a time,
    in this process.
    """
    options.check()
    check_int("batch_size", batch_size, 1)
    check_int("world_size", world_size, 1)
    check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be below world_size ({world_size}), not {rank}")
    if channels not in ("RGB", "BGR"):
        raise ValueError(f"channels must be 'RGB' or 'BGR', not {channels!r}")
    if isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim == 3):
        raise TypeError("images must be a collection of images, not a single image")
    for index, source in enumerate(images):
        if index % world_size != rank:
            continue
        name = source_name(source)
        try:
            image = load_source(source, channels)
        except ImageError as err:
            yield ImageResult(index, name, error=err)
            continue
        detections = detect_sliced(
            model, image, options, batch_size=batch_size, score_threshold=score_threshold
        )
        detections.source = name
        yield ImageResult(index, name, detections, image=image if keep_images else None)


def detect_sliced(
    model: BatchDetector,
    image: np.ndarray,
    options: SliceOptions,
    *,
    batch_size: int = 1,
    score_threshold: float | None = None,
) -> Detections:
    """The merged detections of one decoded HxWx3 uint8 RGB ``image`` (``source`` None)."""
    height, width = image.shape[:2]
    if height <= options.size and width <= options.size:
        return _only(run_inference(model, [image], score_threshold=score_threshold))
    windows = [
        (x1, y1, x2, y2)
        for x1, y1, x2, y2 in tile_windows(height, width, options.size, options.overlap).tolist()
    ]
    frames: list[tuple[int, int, int, int] | None] = [*windows]
    if options.whole_image:
        frames.append(None)

    def inputs() -> Iterator[np.ndarray]:  # views, made as the loop asks for them
        for x1, y1, x2, y2 in windows:
            yield image[y1:y2, x1:x2]
        if options.whole_image:
            yield image

    results = run_inference(model, inputs(), batch_size=batch_size, score_threshold=score_threshold)
    boxes, scores, ids, names, cut = [], [], [], [], []
    for result, frame in zip(results, frames, strict=True):
        dets = _checked(result)
        if frame is None:
            boxes.append(dets.boxes)
            cut.append(np.zeros(len(dets), dtype=bool))
        else:
            x1, y1 = frame[0], frame[1]
            boxes.append(dets.boxes + np.asarray([x1, y1, x1, y1], dtype=np.float32))
            cut.append(cut_mask(dets.boxes, frame, (height, width)))
        scores.append(dets.scores)
        ids.append(dets.category_ids)
        names.extend(dets.class_names)
    all_boxes = np.concatenate(boxes).reshape(-1, 4)
    limits = np.asarray([width, height, width, height], dtype=np.float32)
    all_boxes = np.clip(all_boxes, 0, limits)
    all_ids = np.concatenate(ids).astype(np.int64)
    keep, merged, merged_scores = merge_boxes(
        all_boxes,
        np.concatenate(scores),
        all_ids,
        np.concatenate(cut),
        options.merge,
        options.merge_iou,
    )
    return Detections(
        boxes=merged,
        scores=merged_scores,
        category_ids=all_ids[keep],
        class_names=[names[i] for i in keep],
        image_size=(height, width),
    )


def _checked(result: ImageResult) -> Detections:
    if result.error is not None:
        raise result.error
    assert result.detections is not None
    return result.detections


def _only(results: Iterator[ImageResult]) -> Detections:
    (result,) = list(results)
    return _checked(result)


def run_images(
    model: BatchDetector,
    images: Iterable[ImageSource],
    slicing: SliceOptions | None = None,
    *,
    batch_size: int = 1,
    workers: int = 0,
    score_threshold: float | None = None,
    keep_images: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[ImageResult]:
    """:func:`sliced_inference` with ``slicing``, else
    :func:`~fasterrcnn.inference.loop.run_inference` (decoding in ``workers`` processes): what
    the commands call, so that slicing is one argument everywhere."""
    if slicing is None:
        return run_inference(
            model, images, batch_size=batch_size, workers=workers,
            score_threshold=score_threshold, keep_images=keep_images, rank=rank,
            world_size=world_size,
        )  # fmt: skip
    return sliced_inference(
        model, images, slicing, batch_size=batch_size, score_threshold=score_threshold,
        keep_images=keep_images, rank=rank, world_size=world_size,
    )  # fmt: skip
