"""Repeat-factor sampling and background images in the grouped sampler: the factors by hand,
the occurrences per epoch, exact resume, duplicate-free global batches, and background-only
images of the real slice reaching the batches."""

from __future__ import annotations

import math
from collections import Counter
from itertools import islice

import numpy as np
import pytest
import torch
from helpers.seeded import DATA

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.group_sampler import GroupedBatchSampler
from fasterrcnn.data.repeat_factors import (
    class_repeat_factors,
    describe_factors,
    epoch_counts,
    repeat_factors,
)
from fasterrcnn.data.train_dataset import TrainingDataset
from fasterrcnn.data.training_batch import collate_training
from fasterrcnn.zoo.presets import TORCHVISION_R50_FPN

IMAGES = DATA / "coco" / "val2017"
TV = TORCHVISION_R50_FPN.config.input

# Ten images: class 0 in eight, class 1 in one, class 2 in two, one background-only image.
LABELS = [[0], [0, 1], [0], [2], [], [0, 2], [0], [0], [0], [0]]


def test_factors_by_hand():
    # f(0) = 0.8, f(1) = 0.1, f(2) = 0.2; T = 0.3: r(0) = 1 (sqrt(0.375) < 1),
    # r(1) = sqrt(3), r(2) = sqrt(1.5).
    assert class_repeat_factors(LABELS, 0.3) == pytest.approx(
        {0: 1.0, 1: math.sqrt(3.0), 2: math.sqrt(1.5)}
    )
    expected = [1, math.sqrt(3), 1, math.sqrt(1.5), 1, math.sqrt(1.5), 1, 1, 1, 1]
    assert repeat_factors(LABELS, 0.3) == pytest.approx(expected)
    # T = 0.9: r(0) = sqrt(0.9 / 0.8) = 1.0607 too; image 1 takes its largest, r(1) = 3.
    assert repeat_factors(LABELS, 0.9) == pytest.approx(
        [math.sqrt(1.125), 3, math.sqrt(1.125), math.sqrt(4.5), 1, math.sqrt(4.5)]
        + [math.sqrt(1.125)] * 4
    )
    assert repeat_factors(LABELS, 0.05) == [1.0] * 10  # no class rarer than 5 %
    assert describe_factors(repeat_factors(LABELS, 0.3), 0.3).startswith(
        "repeat-factor sampling (threshold 0.3): 3 of 10 images repeated, up to 1.73 times"
    )
    for bad in (0, -1.0, math.inf, math.nan, True, "0.1"):
        with pytest.raises(ValueError, match="the repeat threshold must be a number > 0"):
            repeat_factors(LABELS, bad)  # type: ignore[arg-type]


def test_factors_of_a_training_dataset(dataset: CocoDataset):
    data = TrainingDataset(dataset, dataset.classes, TV, (800,), 1333)
    labels = data.image_labels()
    background = data.background_indices()
    assert len(background) == 2 and all(labels[i] == [] for i in background)
    factors = repeat_factors(labels, 0.5)
    frequency = Counter(c for image in labels for c in image)
    for i, image in enumerate(labels):
        by_hand = max((max(1.0, math.sqrt(0.5 * 10 / frequency[c])) for c in image), default=1.0)
        assert factors[i] == pytest.approx(by_hand)
    assert [factors[i] for i in background] == [1.0, 1.0]
    assert max(factors) == pytest.approx(math.sqrt(5))  # a class in one image of ten


def test_epoch_counts_are_floor_plus_a_draw():
    factors = [1.0, 2.0, 1.25, 3.5]
    generator = torch.Generator().manual_seed(4)
    counts = np.array([epoch_counts(factors, generator) for _ in range(4000)])
    assert set(counts[:, 0]) == {1} and set(counts[:, 1]) == {2}
    assert set(counts[:, 2]) == {1, 2} and set(counts[:, 3]) == {3, 4}
    np.testing.assert_allclose(counts.mean(0), factors, atol=0.03)


# Two groups, factors from 1 to 2.6 (the fractional ones drawn each epoch).
GROUPS = [0] * 12 + [1] * 10
FACTORS = [1.0, 2.6, 1.0, 1.4, 1.0, 1.0, 2.0, 1.0, 1.7, 1.0, 1.0, 1.0]
FACTORS += [1.0, 1.0, 2.2, 1.0, 1.5, 1.0, 1.0, 1.0, 1.0, 1.3]


def test_occurrences_match_the_factors_over_many_epochs():
    sampler = GroupedBatchSampler(GROUPS, 2, seed=7, world_size=2, repeat_factors=FACTORS)
    epochs = 300
    drawn = Counter(i for e in range(epochs) for i in sampler.epoch_visits(e))
    batched: Counter[int] = Counter()
    for batch in sampler.global_batches():
        if batch.epoch >= epochs:
            break
        assert len(set(batch.indices)) == 4
        batched.update(batch.indices)
    for i, factor in enumerate(FACTORS):
        # Every drawn occurrence is batched but the few still waiting in a bucket.
        assert 0 <= drawn[i] - batched[i] <= math.ceil(factor) + 1, i
        spread = math.sqrt(epochs * (factor % 1) * (1 - factor % 1))
        assert abs(drawn[i] - epochs * factor) <= 5 * spread + 1e-9, i
    # The draws are of (seed, epoch) alone: another sampler draws the same.
    other = GroupedBatchSampler(GROUPS, 1, seed=7, repeat_factors=FACTORS)
    assert other.epoch_visits(5) == sampler.epoch_visits(5)
    assert sampler.epoch_visits(5) != sampler.epoch_visits(6)


def test_factors_of_one_change_nothing():
    plain = GroupedBatchSampler(GROUPS, 3, seed=2)
    ones = GroupedBatchSampler(GROUPS, 3, seed=2, repeat_factors=[1] * len(GROUPS))
    assert list(islice(plain, 50)) == list(islice(ones, 50))


def naive_duplicates(sampler: GroupedBatchSampler, epochs: int) -> bool:
    """Whether filling buckets without holding back repeated images would batch an image
    twice."""
    buckets: dict[int, list[int]] = {}
    for epoch in range(epochs):
        for index in sampler.epoch_visits(epoch):
            bucket = buckets.setdefault(sampler.groups[index], [])
            if index in bucket:
                return True
            bucket.append(index)
            if len(bucket) == sampler.global_batch_size:
                bucket.clear()
    return False


def test_no_global_batch_holds_an_image_twice():
    heavy = [3.7 if i % 5 == 0 else 1.0 for i in range(len(GROUPS))]
    sampler = GroupedBatchSampler(GROUPS, 3, seed=1, world_size=2, repeat_factors=heavy)
    assert naive_duplicates(sampler, 3)  # the case is exercised
    for batch in islice(sampler.global_batches(), 400):
        assert len(set(batch.indices)) == 6, batch
        assert {GROUPS[i] for i in batch.indices} == {batch.group}


def test_resume_equals_the_tail_of_an_uninterrupted_run():
    for rank in (0, 1):
        whole = list(islice(GroupedBatchSampler(GROUPS, 2, 5, rank, 2, 0, FACTORS), 90))
        resumed = GroupedBatchSampler(
            GROUPS, 2, 5, rank, 2, start_iteration=37, repeat_factors=FACTORS
        )
        assert list(islice(resumed, 53)) == whole[37:]


def test_bad_repeat_factors():
    for factors, problem in [
        ([1.0] * 3, "3 repeat factors for 22 images"),
        ([1.0] * 21 + [0.5], "repeat factor 21 must be a finite number >= 1, not 0.5"),
        ([1.0] * 21 + [math.nan], "repeat factor 21 must be a finite number >= 1, not nan"),
    ]:
        with pytest.raises(ValueError, match=problem):
            GroupedBatchSampler(GROUPS, 2, 0, repeat_factors=factors)


@pytest.mark.parametrize("threshold", [None, 0.5])
def test_background_images_reach_the_batches(dataset: CocoDataset, threshold: float | None):
    data = TrainingDataset(dataset, dataset.classes, TV, (128,), 192)
    background = data.background_indices()
    assert [data.image_ids[i] for i in background] == [58636, 226111]
    factors = None if threshold is None else repeat_factors(data.image_labels(), threshold)
    sampler = GroupedBatchSampler(data.aspect_groups(), 2, seed=3, repeat_factors=factors)
    # 40 iterations of 2: 80 occurrences, 5 epochs or more.
    keys = [key for batch in islice(sampler, 40) for key in batch]
    seen = Counter(key.dataset_index for key in keys)
    assert all(seen[i] >= 4 for i in background), seen
    # Loaded and collated, a background image's targets hold no box.
    key = next(key for key in keys if key.dataset_index in background)
    batch = collate_training([data[key]])
    assert batch.targets[0].boxes.shape == (0, 4) and batch.image_ids[0] in (58636, 226111)
