"""Grouping a stream into batches of equal keys with a bound on what waits: the batches of
images of one padded size that the inference loop runs."""

from __future__ import annotations

import numpy as np
import pytest

from fasterrcnn.inference.size_groups import group_by_key

NAMES = ("000000000139", "000000010764", "000000087038", "000000184324")


# --------------------------------------------------------------------------- grouping


def test_group_by_key_hand_example():
    key = {"a": "A", "b": "B", "c": "C", "x": None}
    items = ["a1", "b1", "a2", "x", "a3", "b2", "c1", "b3"]
    groups = list(group_by_key(items, lambda s: key[s[0]], batch_size=2, max_pending=3))
    # Full pairs go at once, "x" (no key) alone at once; the rest at the end, oldest first.
    assert groups == [["a1", "a2"], ["x"], ["b1", "b2"], ["a3"], ["c1"], ["b3"]]
    # Past max_pending waiting items, the group holding the oldest one goes out unfilled.
    groups = list(group_by_key(["a1", "b1", "c1", "a2"], lambda s: key[s[0]], 2, max_pending=2))
    assert groups == [["a1"], ["b1"], ["c1"], ["a2"]]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5])
@pytest.mark.parametrize("max_pending", [None, 1, 4])
def test_group_by_key_properties(batch_size, max_pending):
    rng = np.random.default_rng(batch_size * 10 + (max_pending or 0))
    keys = [None if k == 4 else int(k) for k in rng.integers(0, 5, 200)]
    limit = 2 * batch_size if max_pending is None else max_pending
    pulled = 0

    def items():
        nonlocal pulled
        for i, k in enumerate(keys):
            pulled += 1
            yield (i, k)

    out: list[int] = []
    waiting_max = 0
    for group in group_by_key(items(), lambda item: item[1], batch_size, max_pending):
        assert 1 <= len(group) <= batch_size
        assert len({k for _, k in group}) == 1
        if group[0][1] is None:
            assert len(group) == 1
        waiting_max = max(waiting_max, pulled - len(out) - len(group))
        out += [i for i, _ in group]
    assert sorted(out) == list(range(len(keys)))  # each item exactly once
    assert waiting_max <= limit  # never more than max_pending held back
    for k in set(keys):  # the items of one key keep their order
        mine = [i for i in out if keys[i] == k]
        assert mine == sorted(mine)


def test_group_by_key_fills_full_batches_when_it_can():
    keys = ["A", "B"] * 6
    groups = list(group_by_key(range(12), lambda i: keys[i], batch_size=3))
    assert [len(g) for g in groups] == [3, 3, 3, 3]
