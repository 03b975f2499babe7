"""Splitting a dataset's indices between ranks for distributed evaluation."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` if it is an integer (not a bool) of at least ``minimum``; else ValueError."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def shard_indices(num_items: int, rank: int = 0, world_size: int = 1) -> range:
    """Indices ``rank, rank + world_size, ...`` below ``num_items``: rank ``rank``'s shard.

    The shards of ranks ``0 .. world_size - 1`` are disjoint and together cover
    ``range(num_items)`` exactly once (no padding, unlike ``DistributedSampler``).
    """
    check_int("num_items", num_items, 0)
    check_int("world_size", world_size, 1)
    check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be below world_size ({world_size}), not {rank}")
    return range(rank, num_items, world_size)


class ShardSampler(Sampler[int]):
    """Yields :func:`shard_indices` in order: each index goes to exactly one rank."""

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        self.indices = shard_indices(num_items, rank, world_size)
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
