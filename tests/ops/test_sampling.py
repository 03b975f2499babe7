"""Tests of ``fasterrcnn.ops.sampling.sample_balanced``: counts, labels, order, seeding and
uniformity of the draws."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fasterrcnn.ops.sampling import sample_balanced


def _labels(num_pos: int, num_neg: int, num_ignore: int, seed: int = 0) -> torch.Tensor:
    """The labels shuffled so that positives, negatives and ignored entries interleave."""
    labels = torch.tensor([1] * num_pos + [0] * num_neg + [-1] * num_ignore, dtype=torch.int64)
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))]


def _check_indices(indices: torch.Tensor, labels: torch.Tensor, label: int) -> None:
    assert indices.dtype == torch.int64
    assert indices.dim() == 1
    values = indices.tolist()
    assert values == sorted(set(values)), "indices must be sorted and unique"
    assert all(labels[i].item() == label for i in values)


@pytest.mark.parametrize(
    ("num_pos", "num_neg", "num_ignore", "num_samples", "fraction", "expected"),
    [
        (20, 30, 5, 16, 0.5, (8, 8)),  # plenty of both
        (3, 30, 5, 16, 0.5, (3, 13)),  # few positives: negatives fill up to num_samples
        (20, 2, 5, 16, 0.5, (8, 2)),  # few negatives: positives stay at their quota
        (2, 3, 5, 16, 0.5, (2, 3)),  # both short
        (20, 30, 5, 0, 0.5, (0, 0)),  # num_samples 0
        (0, 0, 9, 16, 0.5, (0, 0)),  # all ignored
        (0, 0, 0, 16, 0.5, (0, 0)),  # no entries
        (20, 30, 0, 10, 0.25, (2, 8)),  # int(2.5) = 2 positives
        (20, 30, 0, 10, 0.0, (0, 10)),
        (20, 30, 0, 10, 1.0, (10, 0)),
        (4, 30, 0, 10, 1.0, (4, 6)),
        (0, 30, 0, 256, 0.25, (0, 30)),
    ],
)
def test_counts(num_pos, num_neg, num_ignore, num_samples, fraction, expected):
    labels = _labels(num_pos, num_neg, num_ignore)
    generator = torch.Generator().manual_seed(1)
    positive, negative = sample_balanced(labels, num_samples, fraction, generator)
    assert (positive.numel(), negative.numel()) == expected
    _check_indices(positive, labels, 1)
    _check_indices(negative, labels, 0)


def test_everything_is_taken_when_there_is_room():
    labels = torch.tensor([0, -1, 1, 1, -1, 0, 0, 1])
    positive, negative = sample_balanced(labels, 100, 0.5)
    assert positive.tolist() == [2, 3, 7]
    assert negative.tolist() == [0, 5, 6]


def test_ignored_entries_are_never_chosen():
    for seed in range(50):
        labels = _labels(6, 6, 30, seed)
        generator = torch.Generator().manual_seed(seed)
        positive, negative = sample_balanced(labels, 8, 0.5, generator)
        chosen = torch.cat((positive, negative))
        assert (labels[chosen] != -1).all()
        assert (positive.numel(), negative.numel()) == (4, 4)


def test_same_seed_same_choice_and_the_documented_draw_order():
    labels = _labels(40, 60, 10, seed=3)
    first = sample_balanced(labels, 32, 0.25, torch.Generator().manual_seed(7))
    second = sample_balanced(labels, 32, 0.25, torch.Generator().manual_seed(7))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    # One randperm over the positives, then one over the negatives, from the same generator.
    generator = torch.Generator().manual_seed(7)
    positives = torch.nonzero(labels == 1).squeeze(1)
    negatives = torch.nonzero(labels == 0).squeeze(1)
    expected_pos = positives[torch.randperm(40, generator=generator)[:8]].sort().values
    expected_neg = negatives[torch.randperm(60, generator=generator)[:24]].sort().values
    assert torch.equal(first[0], expected_pos)
    assert torch.equal(first[1], expected_neg)


def test_global_generator_is_used_without_one():
    labels = _labels(40, 60, 10)
    torch.manual_seed(123)
    first = sample_balanced(labels, 32, 0.25)
    torch.manual_seed(123)
    second = sample_balanced(labels, 32, 0.25)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_different_seeds_give_different_choices():
    labels = _labels(40, 60, 10)
    choices = set()
    for seed in range(10):
        positive, negative = sample_balanced(labels, 32, 0.25, torch.Generator().manual_seed(seed))
        choices.add((tuple(positive.tolist()), tuple(negative.tolist())))
    # C(40, 8) * C(60, 24) possible choices: 10 equal draws would be a broken sampler.
    assert len(choices) == 10


def test_draws_are_uniform():
    # 5 positives and 5 negatives among ignored entries; 2 of each are drawn per call.
    labels = torch.tensor([1, -1, 0, 1, 0, 1, -1, 0, 1, 0, 0, 1, -1])
    positives = torch.nonzero(labels == 1).squeeze(1).tolist()
    negatives = torch.nonzero(labels == 0).squeeze(1).tolist()
    num_draws = 10_000
    generator = torch.Generator().manual_seed(2024)
    singles = {i: 0 for i in positives + negatives}
    pairs = {p: 0 for p in itertools.combinations(positives, 2)}
    pairs.update({p: 0 for p in itertools.combinations(negatives, 2)})
    for _ in range(num_draws):
        positive, negative = sample_balanced(labels, 4, 0.5, generator)
        for chosen in (positive.tolist(), negative.tolist()):
            assert len(chosen) == 2
            pairs[(chosen[0], chosen[1])] += 1
            for i in chosen:
                singles[i] += 1
    # Each index is drawn with probability 2/5, each pair with 1/10, independently per call.
    # Hoeffding: P(|frequency - p| >= t) <= 2 exp(-2 n t^2) = 2 exp(-18) < 3e-8 for n = 10000,
    # t = 0.03; over the 10 indices and 20 pairs a correct sampler fails with p < 1e-6.
    tolerance = 0.03
    assert 2 * math.exp(-2 * num_draws * tolerance**2) * 30 < 1e-6
    for i, count in singles.items():
        assert abs(count / num_draws - 0.4) < tolerance, (i, count)
    for pair, count in pairs.items():
        assert abs(count / num_draws - 0.1) < tolerance, (pair, count)


@pytest.mark.parametrize(
    ("num_samples", "fraction", "message"),
    [
        (-1, 0.5, "num_samples >= 0"),
        (8, -0.1, "0 <= positive_fraction <= 1"),
        (8, 1.5, "0 <= positive_fraction <= 1"),
        (8, float("nan"), "0 <= positive_fraction <= 1"),
    ],
)
def test_invalid_arguments(num_samples, fraction, message):
    with pytest.raises(ValueError, match=message):
        sample_balanced(torch.tensor([1, 0, -1]), num_samples, fraction)


def test_invalid_labels():
    with pytest.raises(ValueError, match=r"Tensor\[A\]"):
        sample_balanced(torch.zeros(2, 3, dtype=torch.int64), 4, 0.5)
    with pytest.raises(ValueError, match="integer labels"):
        sample_balanced(torch.tensor([1.0, 0.0]), 4, 0.5)
    with pytest.raises(ValueError, match=r"\{1, 0, -1\}"):
        sample_balanced(torch.tensor([1, 0, 2]), 4, 0.5)
    with pytest.raises(ValueError, match=r"\{1, 0, -1\}"):
        sample_balanced(torch.tensor([-2, 0]), 4, 0.5)
