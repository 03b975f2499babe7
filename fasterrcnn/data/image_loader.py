"""Decoding and resizing images in ``DataLoader`` workers, in input order, a few at a time.

Each source (an image path or an HxWx3 uint8 array) becomes a :class:`LoadedImage` (its
pixels through the uint8 stage of preprocessing: channel order and the cv2 or Pillow resize)
or a :class:`LoadFailure` (the one-line reason it could not be read). Only the images in flight are held in memory: a list of 10,000 paths is
never decoded at once. With ``world_size > 1`` a process loads only its shard (every
``world_size``-th source, starting at ``rank``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from fasterrcnn.config import InputConfig
from fasterrcnn.data.images import ImageError, read_image, to_rgb
from fasterrcnn.data.shard_sampler import ShardSampler
from fasterrcnn.data.transforms import resize_pixels, resized_size

ImageSource = str | Path | np.ndarray

# Sources of an iterable without a length are taken this many at a time.
CHUNK_SIZE = 256


@dataclass
class LoadedImage:
    """One decoded image, through the uint8 stage of its preprocessing.

    ``index``: position of the source in the input; ``pixels``: Tensor[3, h, w] uint8 from
    :func:`~fasterrcnn.data.transforms.resize_pixels`; ``original_size``: (h, w) as decoded;
    ``image_size``: (h, w) of the network input; ``image``: the decoded HxWx3 uint8 RGB array,
    kept only when asked for.
    """

    index: int
    source: str | None
    pixels: Tensor
    original_size: tuple[int, int]
    image_size: tuple[int, int]
    image: np.ndarray | None = None

    def pin_memory(self) -> LoadedImage:
        """Called by the ``DataLoader`` (``pin_memory=True``) for fast copies to a GPU."""
        return replace(self, pixels=self.pixels.pin_memory())


@dataclass
class LoadFailure:
    """A source that could not be read: ``error`` names it and the problem."""

    index: int
    source: str | None
    error: ImageError


LoadRecord = LoadedImage | LoadFailure


def source_name(source: Any) -> str | None:
    return str(source) if isinstance(source, (str, Path)) else None


def load_source(source: ImageSource, channels: str = "RGB") -> np.ndarray:
    """An image path or HxWx3 uint8 array (``channels`` order) -> HxWx3 uint8 RGB array."""
    if isinstance(source, (str, Path)):
        return read_image(source)
    return to_rgb(source, channels)


class SourceDataset(Dataset[LoadRecord]):
    """Map-style dataset over ``sources``: item ``i`` is source ``i`` loaded for the network
    (``index`` = ``offset + i``)."""

    def __init__(
        self,
        sources: Sequence[ImageSource],
        cfg: InputConfig,
        *,
        channels: str = "RGB",
        keep_images: bool = False,
        offset: int = 0,
    ) -> None:
        self.sources = sources
        self.cfg = cfg
        self.channels = channels
        self.keep_images = keep_images
        self.offset = offset

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> LoadRecord:
        source = self.sources[i]
        index, name = self.offset + i, source_name(source)
        try:
            image = load_source(source, self.channels)
        except ImageError as err:
            return LoadFailure(index, name, err)
        height, width = image.shape[:2]
        return LoadedImage(
            index=index,
            source=name,
            pixels=resize_pixels(image, self.cfg),
            original_size=(height, width),
            image_size=resized_size(height, width, self.cfg),
            image=image if self.keep_images else None,
        )


def load_images(
    sources: Iterable[ImageSource],
    cfg: InputConfig,
    *,
    channels: str = "RGB",
    workers: int = 0,
    keep_images: bool = False,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[LoadRecord]:
    """Load this process's share of ``sources``, in input order, decoding in ``workers``
    processes (0: in this one).

    A sequence (a list, a tuple, a map-style dataset) is read through one ``DataLoader``; any
    other iterable is consumed lazily, ``chunk_size`` sources at a time (video frames: a few,
    so that only those are held).
    """
    if isinstance(sources, (str, Path)) or (isinstance(sources, np.ndarray) and sources.ndim == 3):
        raise TypeError("sources must be a collection of images, not a single image")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, not {workers}")
    if hasattr(sources, "__len__") and hasattr(sources, "__getitem__"):
        dataset = SourceDataset(sources, cfg, channels=channels, keep_images=keep_images)  # type: ignore[arg-type]
        sampler: Iterable[int] = ShardSampler(len(dataset), rank, world_size)
        yield from _loader(dataset, sampler, workers, pin_memory)
        return
    positions = iter(sources)
    offset = 0
    while chunk := list(islice(positions, chunk_size)):
        dataset = SourceDataset(
            chunk, cfg, channels=channels, keep_images=keep_images, offset=offset
        )
        mine = [i for i in range(len(chunk)) if (offset + i) % world_size == rank]
        yield from _loader(dataset, mine, workers, pin_memory)
        offset += len(chunk)


def _loader(
    dataset: SourceDataset, sampler: Iterable[int], workers: int, pin_memory: bool
) -> Iterator[LoadRecord]:
    loader: DataLoader[LoadRecord] = DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,  # type: ignore[arg-type]
        num_workers=workers,
        collate_fn=_one_item,
        pin_memory=pin_memory,
    )
    yield from loader


def _one_item(record: Any) -> Any:
    """``collate_fn`` for single items (``batch_size=None``): the record as it is."""
    return record
