"""Flat tensors whose rows belong to groups (images of a batch, NMS groups): sorting them by
group, ranking rows within their group, and splitting them, without a Python loop."""

from __future__ import annotations

import torch
from torch import Tensor

from fasterrcnn.ops.shapes import as_size


def sort_by_group(
    groups: Tensor, num_groups: int | Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``groups`` Tensor[K] int64 in ``[0, num_groups)`` -> ``order`` (stable by group),
    ``counts`` and ``starts`` Tensor[num_groups] (each group's size and first position in that
    order), and ``rank`` Tensor[K], each sorted row's position within its group. Without a
    host synchronisation, and traceable (the keys are unique, so any sort is stable)."""
    count = groups.shape[0]
    positions = torch.arange(count, device=groups.device)
    order = torch.argsort(groups * count + positions)
    counts = torch.zeros(as_size(num_groups), dtype=torch.int64, device=groups.device)
    counts = counts.scatter_add(0, groups, torch.ones_like(groups))
    starts = torch.cumsum(counts, 0) - counts
    rank = positions - starts[groups[order]]
    return order, counts, starts, rank


def split_by_group(groups: Tensor, num_groups: int, *fields: Tensor) -> list[tuple[Tensor, ...]]:
    """The rows of ``fields`` of each group, as views: ``groups`` is non-decreasing (one host
    synchronisation for the counts)."""
    counts = torch.bincount(groups, minlength=num_groups).tolist()
    return list(zip(*(f.split(counts) for f in fields), strict=True))
