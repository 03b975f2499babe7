"""Batches of same-shape images for training, the same schedule on every rank.

:class:`GroupedBatchSampler` turns a group id per image (e.g.
:meth:`~fasterrcnn.data.train_dataset.TrainingDataset.aspect_groups`) into an endless stream
of batches whose images share a group, so that padding a batch wastes little. Every rank
computes the same sequence of *global* batches (``batch_size * world_size`` images each, one
per iteration) without talking to the others and takes its own ``batch_size`` slice: the
ranks' batches of an iteration are disjoint.

The schedule, from iteration 0:

* epoch ``e`` visits all images in a random order drawn from ``seed`` and ``e``; with
  ``repeat_factors`` (:mod:`fasterrcnn.data.repeat_factors`) image ``i`` occurs
  ``floor(r_i)`` times, plus once more with probability ``frac(r_i)`` drawn from ``seed`` and
  ``e``, and the epoch visits all these occurrences in a random order;
* each occurrence goes into the bucket of its image's group; a bucket that holds
  ``batch_size * world_size`` images is a global batch (the next iteration) and starts empty
  again;
* images left in a bucket when an epoch ends stay there and are batched with the next
  epoch's images of their group (carry-over: no image is dropped, and an epoch's batches may
  hold a few images of the previous epoch);
* a global batch never holds an image twice: an occurrence of an image that is already in
  its bucket (carried over, or repeated) waits, in arrival order, and fills the bucket's next
  batches before any new occurrence. An image waits at most ``ceil(r_i)`` times (once
  without repeat factors); a further occurrence, which only comes when an image's factor
  exceeds the number of batches its group fills per epoch, is dropped;
* a group with fewer images than one global batch could never fill a bucket: its images join
  the largest group (:attr:`GroupedBatchSampler.merged_groups` lists such groups).

So without repeat factors, up to the end of epoch ``E`` every image has been batched
``E + 1`` times, except fewer than one global batch per group, waiting in the buckets,
batched ``E`` times.

Each yielded item is a :class:`SampleKey` ``(dataset_index, seed, iteration)``: the image's
dataset index, a seed for its random augmentation that depends only on (``seed``, iteration,
position in the global batch), and the iteration. ``start_iteration=k`` recomputes the
schedule from iteration 0 (bucketing indices only, no image work) and yields from iteration
``k`` on exactly what an uninterrupted sampler yields. The schedule uses ``torch.randperm``
and ``torch.rand``: a resumed run must use the same torch version to get the same orders.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from typing import NamedTuple

import torch
from torch.utils.data import Sampler

from fasterrcnn.data.repeat_factors import check_factors, epoch_counts
from fasterrcnn.data.shard_sampler import check_int

# Seeds derived by hashing are taken to 63 bits (they fit a signed int64 and torch.Generator).
SEED_BITS = 63


class SampleKey(NamedTuple):
    """Which image to load and how to augment it: the ``dataset_index``, the augmentation
    ``seed`` and the training ``iteration`` whose batch it belongs to (None if not known)."""

    dataset_index: int
    seed: int
    iteration: int | None = None


@dataclass(frozen=True)
class GlobalBatch:
    """One iteration's images on all ranks together.

    ``indices``: ``batch_size * world_size`` distinct dataset indices of one ``group``; rank
    ``r`` takes ``indices[r * batch_size : (r + 1) * batch_size]``. ``epoch``: the epoch whose
    image completed the batch (a carried-over image may come from the epoch before).
    """

    iteration: int
    epoch: int
    group: int
    indices: tuple[int, ...]


def derived_seed(*parts: int) -> int:
    """A well-mixed non-negative 63-bit seed that depends only on ``parts`` (any integers)."""
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> (64 - SEED_BITS)


def sample_seed(seed: int, iteration: int, position: int) -> int:
    """Augmentation seed of the image at ``position`` of iteration ``iteration``'s global batch."""
    return derived_seed(seed, 1, iteration, position)


def epoch_order(num_items: int, seed: int, epoch: int) -> list[int]:
    """The random order in which epoch ``epoch`` visits ``range(num_items)``."""
    generator = torch.Generator().manual_seed(derived_seed(seed, 0, epoch))
    return torch.randperm(num_items, generator=generator).tolist()


class GroupedBatchSampler(Sampler[list[SampleKey]]):
    """Endless batches of ``batch_size`` :class:`SampleKey` of one group for rank ``rank``.

    ``groups[i]`` is the group id (any integer) of dataset index ``i``; ``repeat_factors[i]``
    (each >= 1, None: all 1) how often it occurs per epoch on average. See the module
    docstring for the schedule. Iterating again starts again at ``start_iteration``; the
    ``j``-th batch yielded is iteration ``start_iteration + j`` (also in each key).
    """

    def __init__(
        self,
        groups: Sequence[int],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_iteration: int = 0,
        repeat_factors: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seed = check_int("seed", seed, 0)
        self.world_size = check_int("world_size", world_size, 1)
        self.rank = check_int("rank", rank, 0)
        if rank >= world_size:
            raise ValueError(f"rank must be below world_size ({world_size}), not {rank}")
        self.start_iteration = check_int("start_iteration", start_iteration, 0)
        for i, group in enumerate(groups):
            if not isinstance(group, int) or isinstance(group, bool):
                raise ValueError(f"groups[{i}] must be an integer group id, not {group!r}")
        size = self.global_batch_size
        if len(groups) < size:
            raise ValueError(
                f"{len(groups)} images are fewer than one global batch of {size} "
                f"(batch_size {batch_size} x world_size {world_size})"
            )
        sizes = Counter(groups)
        largest = max(sizes, key=lambda group: (sizes[group], -group))
        self.merged_groups: tuple[int, ...] = tuple(
            sorted(group for group, n in sizes.items() if n < size and group != largest)
        )
        """Groups smaller than one global batch whose images were put into the largest."""
        merged = set(self.merged_groups)
        self.groups: tuple[int, ...] = tuple(largest if g in merged else g for g in groups)
        """The group each image is batched in (after merging)."""
        self.repeat_factors: tuple[float, ...] | None = None
        """Each image's repeat factor, or None (every image once per epoch)."""
        self._max_waiting = [1] * len(groups)
        if repeat_factors is not None:
            self.repeat_factors = check_factors(repeat_factors, len(groups))
            self._max_waiting = [math.ceil(f) for f in self.repeat_factors]

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def epoch_visits(self, epoch: int) -> list[int]:
        """The dataset indices epoch ``epoch`` visits, in order (with repeats, if any)."""
        if self.repeat_factors is None:
            return epoch_order(len(self.groups), self.seed, epoch)
        generator = torch.Generator().manual_seed(derived_seed(self.seed, 2, epoch))
        counts = epoch_counts(self.repeat_factors, generator)
        occurrences = [i for i, n in enumerate(counts) for _ in range(n)]
        return [occurrences[j] for j in epoch_order(len(occurrences), self.seed, epoch)]

    def global_batches(self) -> Iterator[GlobalBatch]:
        """The schedule shared by all ranks, from iteration 0, endless."""
        size = self.global_batch_size
        buckets: dict[int, list[int]] = {}
        waiting: dict[int, list[int]] = {}  # occurrences of images already in their bucket
        iteration = 0
        for epoch in count():
            for index in self.epoch_visits(epoch):
                group = self.groups[index]
                bucket = buckets.setdefault(group, [])
                if index in bucket:
                    queue = waiting.setdefault(group, [])
                    if queue.count(index) < self._max_waiting[index]:
                        queue.append(index)
                    continue
                bucket.append(index)
                while len(bucket) == size:
                    yield GlobalBatch(iteration, epoch, group, tuple(bucket))
                    iteration += 1
                    bucket = buckets[group] = []
                    still: list[int] = []
                    for queued in waiting.pop(group, []):
                        if len(bucket) < size and queued not in bucket:
                            bucket.append(queued)
                        else:
                            still.append(queued)
                    if still:
                        waiting[group] = still

    def __iter__(self) -> Iterator[list[SampleKey]]:
        first = self.rank * self.batch_size
        for batch in self.global_batches():
            if batch.iteration < self.start_iteration:
                continue
            mine = batch.indices[first : first + self.batch_size]
            yield [
                SampleKey(
                    index, sample_seed(self.seed, batch.iteration, first + p), batch.iteration
                )
                for p, index in enumerate(mine)
            ]
