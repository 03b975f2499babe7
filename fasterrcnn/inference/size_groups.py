"""Grouping a stream into batches of equal keys, with a bound on what waits.

Images are batched only with images of the same padded network-input size: padding an image
further would change the features near its border, so each image gets exactly the result it
gets alone.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def group_by_key(
    items: Iterable[T],
    key: Callable[[T], Hashable | None],
    batch_size: int,
    max_pending: int | None = None,
) -> Iterator[list[T]]:
    """Lists of up to ``batch_size`` items of one key, each item in exactly one list.

    A group goes out as soon as it is full. An item whose key is ``None`` goes out alone at
    once. At most ``max_pending`` items (default ``2 * batch_size``) wait for their group to
    fill; past that, the group holding the oldest waiting item goes out unfilled, so memory
    stays bounded and no item waits forever. What waits at the end goes out oldest first.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    limit = 2 * batch_size if max_pending is None else max_pending
    groups: dict[Hashable, list[tuple[int, T]]] = {}
    pending = 0
    for arrival, item in enumerate(items):
        k = key(item)
        if k is None:
            yield [item]
            continue
        group = groups.setdefault(k, [])
        group.append((arrival, item))
        pending += 1
        if len(group) == batch_size:
            pending -= len(group)
            yield [x for _, x in groups.pop(k)]
        elif pending > limit:
            oldest = min(groups, key=lambda g: groups[g][0][0])
            pending -= len(groups[oldest])
            yield [x for _, x in groups.pop(oldest)]
    for k in sorted(groups, key=lambda g: groups[g][0][0]):
        yield [x for _, x in groups[k]]
