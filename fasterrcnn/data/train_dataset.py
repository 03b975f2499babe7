"""Training samples from a COCO dataset: filtered boxes, multi-scale resize, horizontal flip.

:class:`TrainingDataset` filters the annotations once, at construction, without decoding any
image (:mod:`fasterrcnn.data.box_filter`), in this order (each annotation is counted under the
first reason that drops it):

1. crowd annotations (``iscrowd == 1``, which also marks Pascal VOC "difficult" objects) are
   dropped, unless ``use_crowd=True``: then they are trained on as ordinary boxes;
2. annotations whose category is no class of the model are dropped (categories are matched
   to classes as evaluation matches them: by id where the names agree, else by name);
3. ``bbox`` (x, y, w, h) becomes (x1, y1, x2, y2) and is clipped to the image
   (``[0, width] x [0, height]`` of the file's image entry); boxes whose width or height is
   then <= 0 are dropped as degenerate (negative sizes in the file included, see
   ``CocoDataset.load(..., strict_boxes=False)``), the others that clipping changed are
   counted as clipped;
4. an image left without a box is kept as a background-only image (every anchor and RoI of
   it is a negative), except that
   - an image that had a dropped crowd box of one of the model's classes is dropped (a crowd
     region is not background; counted as ``crowd_images_dropped``), and
   - with ``drop_empty=True`` every image left without a box is dropped (``images_dropped``).

A dataset left without any box at all is a :class:`~fasterrcnn.data.coco.DatasetError`.

An image entry without ``width`` and ``height`` cannot be clipped before it is decoded: its
boxes of size <= 0 are dropped (and counted) at construction, and the clipping to the
decoded image, with the drop of boxes it leaves empty, happens in every ``__getitem__``
(not counted; such an image may then have no box, and trains as background). An image whose
decoded size differs from its entry's size is an :class:`~fasterrcnn.data.images.ImageError`
when it is loaded.

Item ``SampleKey(index, seed)`` is the kept image ``index`` augmented by draws from
``random.Random(seed)``: a short side from ``short_sides`` (uniform), then a horizontal flip
with probability ``flip_prob``. It is resized as inference resizes for that short side and
``max_side`` and normalized. A sample is a function of its key only, whichever process or
worker computes it (the ``torch_bilinear`` resize may differ in the last bits with the number
of threads it runs on, as in inference; the cv2 and Pillow resizes do not).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from operator import index as as_index
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fasterrcnn.config import ClassTable, InputConfig
from fasterrcnn.data.box_filter import FilterCounts, filter_annotations
from fasterrcnn.data.coco import CocoDataset, DatasetError
from fasterrcnn.data.group_sampler import SampleKey
from fasterrcnn.data.images import ImageError, read_image
from fasterrcnn.data.training_batch import TrainingSample
from fasterrcnn.data.transforms import normalize_pixels, resize_pixels, resized_size
from fasterrcnn.modeling.targets import Targets

# Group ids of aspect_groups().
WIDE = 0  # width >= height
TALL = 1  # height > width
UNSIZED = 2  # no width/height in the annotation file


class TrainingDataset(Dataset[TrainingSample]):
    """The kept images of ``dataset`` (see the module docstring) as augmented training samples.

    ``classes``: the model's class table (labels are indices into it); ``cfg``: the model's
    input config, whose ``short_side`` and ``max_side`` are replaced per sample by one of
    ``short_sides`` and ``max_side``. ``dataset`` must have been loaded with an image folder.
    ``drop_empty``: drop the images left without a box instead of keeping them as background;
    ``use_crowd``: train on crowd (difficult) boxes as on the others.
    """

    def __init__(
        self,
        dataset: CocoDataset,
        classes: ClassTable,
        cfg: InputConfig,
        short_sides: Sequence[int],
        max_side: int,
        flip_prob: float = 0.5,
        *,
        drop_empty: bool = False,
        use_crowd: bool = False,
    ) -> None:
        self.source = str(dataset.path) if dataset.path is not None else "annotations dict"
        if dataset.image_root is None:
            raise DatasetError(f"{self.source}: loaded without an image folder to train on")
        self.image_root: Path = dataset.image_root
        self.cfg = cfg
        self.short_sides = _check_sides(short_sides)
        if not isinstance(max_side, int) or isinstance(max_side, bool) or max_side < 1:
            raise ValueError(f"max_side must be a positive integer, not {max_side!r}")
        self.max_side = max_side
        if not (isinstance(flip_prob, (int, float)) and 0.0 <= flip_prob <= 1.0):
            raise ValueError(f"flip_prob must be a number in [0, 1], not {flip_prob!r}")
        self.flip_prob = float(flip_prob)
        self.drop_empty, self.use_crowd = bool(drop_empty), bool(use_crowd)
        kept = filter_annotations(
            dataset, classes, self.source, drop_empty=drop_empty, use_crowd=use_crowd
        )
        self.counts: FilterCounts = kept.counts
        self._image_ids, self._file_names, self._sizes = kept.image_ids, kept.file_names, kept.sizes
        self._starts, self._boxes, self._labels = kept.starts, kept.boxes, kept.labels

    def __len__(self) -> int:
        return len(self._image_ids)

    @property
    def image_ids(self) -> list[int]:
        """The COCO ids of the kept images, in the annotation file's order."""
        return self._image_ids.tolist()

    def summary(self) -> str:
        """One line: images kept (background-only ones among them) and dropped, boxes kept,
        clipped and dropped by reason."""
        return self.counts.line()

    def image_labels(self) -> list[list[int]]:
        """The distinct class labels of each kept image's boxes, ascending (empty for a
        background-only image); what :func:`~fasterrcnn.data.repeat_factors.repeat_factors`
        takes."""
        return [
            np.unique(self._labels[start:end]).tolist()
            for start, end in zip(self._starts[:-1], self._starts[1:], strict=True)
        ]

    def background_indices(self) -> list[int]:
        """The kept images without a box (as filtered at construction)."""
        return np.flatnonzero(self._starts[1:] == self._starts[:-1]).tolist()

    def aspect_groups(self) -> list[int]:
        """Group id of each kept image from the file's sizes: ``WIDE`` (0) when width >=
        height, ``TALL`` (1) when height > width, ``UNSIZED`` (2) when the file has no size."""
        heights, widths = self._sizes[:, 0], self._sizes[:, 1]
        groups = np.where(heights > widths, TALL, WIDE)
        return np.where(heights < 0, UNSIZED, groups).tolist()

    def image_path(self, index: int) -> Path:
        return self.image_root / str(self._file_names[index])

    def boxes(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Kept image ``index``'s filtered boxes ``(x1, y1, x2, y2)`` in file pixels,
        float64 [G, 4], and their labels, int64 [G] (before any augmentation)."""
        start, end = self._starts[index], self._starts[index + 1]
        return self._boxes[start:end].copy(), self._labels[start:end].copy()

    def draw_augmentation(self, seed: int) -> tuple[int, bool]:
        """(short side, flip) of the sample with augmentation seed ``seed``."""
        rng = random.Random(seed)
        short_side = rng.choice(self.short_sides)
        return short_side, rng.random() < self.flip_prob

    def __getitem__(self, key: Any) -> TrainingSample:
        index, seed, iteration = _parse_key(key)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} training images")
        path = self.image_path(index)
        image = read_image(path)
        height, width = image.shape[:2]
        boxes, labels = self.boxes(index)
        file_height, file_width = self._sizes[index].tolist()
        if file_height < 0:  # no size in the file: clip now
            boxes = np.clip(boxes, 0.0, [width, height, width, height])
            usable = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, labels = boxes[usable], labels[usable]
        elif (file_height, file_width) != (height, width):
            raise ImageError(
                f"{path}: decoded as {height}x{width} (h x w), the annotation file says "
                f"{file_height}x{file_width}"
            )
        short_side, flip = self.draw_augmentation(seed)
        cfg = replace(self.cfg, short_side=short_side, max_side=self.max_side)
        new_h, new_w = resized_size(height, width, cfg)
        pixels = normalize_pixels(resize_pixels(image, cfg), (new_h, new_w), cfg)
        boxes = boxes * np.array([new_w / width, new_h / height] * 2)
        if flip:
            pixels = pixels.flip(-1)
            boxes = np.stack(
                [new_w - boxes[:, 2], boxes[:, 1], new_w - boxes[:, 0], boxes[:, 3]], 1
            )
        return TrainingSample(
            image=pixels,
            targets=Targets(
                torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 4),
                torch.from_numpy(labels),
                seed=seed,
            ),
            image_id=int(self._image_ids[index]),
            original_size=(height, width),
            short_side=short_side,
            flipped=flip,
            iteration=iteration,
            cfg=self.cfg,
        )


def _check_sides(short_sides: Sequence[int]) -> tuple[int, ...]:
    sides = tuple(short_sides)
    if not sides:
        raise ValueError("short_sides is empty")
    for side in sides:
        if not isinstance(side, int) or isinstance(side, bool) or side < 1:
            raise ValueError(f"short_sides must be positive integers, not {side!r}")
    return sides


def _parse_key(key: Any) -> tuple[int, int, int | None]:
    """(index, seed, iteration) of a :class:`SampleKey` or an ``(index, seed)`` pair."""
    if not isinstance(key, tuple) or len(key) not in (2, 3):
        raise TypeError(
            f"training samples are keyed by (index, seed) pairs (GroupedBatchSampler yields "
            f"them), not {key!r}"
        )
    key = SampleKey(*key)
    iteration = None if key.iteration is None else as_index(key.iteration)
    return as_index(key.dataset_index), as_index(key.seed), iteration
