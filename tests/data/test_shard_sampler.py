"""Shards of a dataset's indices across the processes of a distributed run."""

from __future__ import annotations

import pytest

from fasterrcnn.data.shard_sampler import ShardSampler, shard_indices

# --- sampler -------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "world"), [(10, 1), (10, 3), (7, 4), (3, 5), (5000, 8)])
def test_shards_are_disjoint_and_cover_everything(n, world):
    shards = [list(ShardSampler(n, rank, world)) for rank in range(world)]
    assert sorted(i for shard in shards for i in shard) == list(range(n))
    assert [len(ShardSampler(n, rank, world)) for rank in range(world)] == [len(s) for s in shards]
    assert shards[0][:2] == list(range(0, n, world))[:2]


def test_shard_edge_cases_and_bad_arguments():
    assert list(ShardSampler(0, 1, 2)) == [] and len(ShardSampler(0)) == 0
    assert shard_indices(10, 2, 4) == range(2, 10, 4)
    for args in [(-1, 0, 1), (5, 2, 2), (5, -1, 2), (5, 0, 0), (5.0, 0, 1), (5, True, 2)]:
        with pytest.raises(ValueError):
            ShardSampler(*args)  # type: ignore[arg-type]
