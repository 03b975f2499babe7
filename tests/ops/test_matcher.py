"""Tests of ``fasterrcnn.ops.matcher.match_boxes``.

Hand-written IoU matrices with their hand-derived matches and labels, then a property test
against a slow loop-by-loop reference on random matrices full of ties.
"""

from __future__ import annotations

import random

import pytest
import torch

from fasterrcnn.ops.matcher import BACKGROUND, FOREGROUND, IGNORE, MatchResult, match_boxes


def _iou(rows, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


def _check(result: MatchResult, matches, labels, max_iou) -> None:
    assert result.matches.dtype == torch.int64
    assert result.labels.dtype == torch.int64
    assert result.matches.tolist() == matches
    assert result.labels.tolist() == labels
    assert result.max_iou.tolist() == pytest.approx(max_iou, abs=0)


def test_constants():
    assert (FOREGROUND, BACKGROUND, IGNORE) == (1, 0, -1)


# ----------------------------------------------------------------------------------------------
# Hand-computed cases
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_threshold_bands_and_boundaries(dtype):
    # RPN thresholds 0.3 / 0.7: fg m >= 0.7, bg m < 0.3, ignore 0.3 <= m < 0.7.
    iou = _iou(
        [
            [0.9, 0.1, 0.69, 0.3, 0.0, 0.5, 0.0],
            [0.2, 0.7, 0.1, 0.3, 0.29, 0.5, 0.0],
        ],
        dtype,
    )
    result = match_boxes(iou, 0.7, 0.3)
    # Column maxima 0.9 (GT 0), 0.7 (GT 1), 0.69 (GT 0), 0.3 (tie -> GT 0), 0.29 (GT 1),
    # 0.5 (tie -> GT 0), 0.0 (tie -> GT 0).
    expected_max = torch.tensor([0.9, 0.7, 0.69, 0.3, 0.29, 0.5, 0.0], dtype=dtype).tolist()
    _check(result, [0, 1, 0, 0, 1, 0, 0], [1, 1, -1, -1, 0, -1, 0], expected_max)
    assert result.max_iou.dtype == dtype


def test_fg_threshold_equal_to_bg_threshold_has_no_ignore_band():
    # RoI heads: 0.5 / 0.5.
    iou = _iou([[0.5, 0.4999, 0.0, 1.0, 0.2], [0.1, 0.2, 0.0, 0.3, 0.6]])
    result = match_boxes(iou, 0.5, 0.5)
    _check(result, [0, 0, 0, 0, 1], [1, 0, 0, 1, 1], [0.5, 0.4999, 0.0, 1.0, 0.6])


def test_bg_low_makes_low_overlaps_ignored():
    iou = _iou([[0.5, 0.1, 0.0999, 0.0, 0.3, 0.49]])
    result = match_boxes(iou, 0.5, 0.5, bg_low=0.1)
    _check(result, [0] * 6, [1, 0, -1, -1, 0, 0], [0.5, 0.1, 0.0999, 0.0, 0.3, 0.49])


def test_bg_low_equal_to_bg_threshold_leaves_no_background():
    iou = _iou([[0.2, 0.3, 0.5, 0.8]])
    result = match_boxes(iou, 0.7, 0.3, bg_low=0.3)
    assert result.labels.tolist() == [-1, -1, -1, 1]


def test_low_quality_matches_with_ties_and_best_for_one_gt_matched_to_another():
    iou = _iou(
        [
            [0.6, 0.6, 0.2, 0.1, 0.0],  # best 0.6 at columns 0 and 1 (a tie)
            [0.1, 0.65, 0.4, 0.65, 0.0],  # best 0.65 at columns 1 and 3 (a tie)
            [0.0, 0.0, 0.0, 0.0, 0.0],  # touches nothing: no low-quality match
        ]
    )
    plain = match_boxes(iou, 0.7, 0.3)
    _check(plain, [0, 1, 1, 1, 0], [-1, -1, -1, -1, 0], [0.6, 0.65, 0.4, 0.65, 0.0])
    low_quality = match_boxes(iou, 0.7, 0.3, allow_low_quality=True)
    # Column 1 is GT 0's best but overlaps GT 1 more: foreground, matched to GT 1.
    # Column 4 stays background although GT 2's highest IoU (0) is reached there.
    _check(low_quality, [0, 1, 1, 1, 0], [1, 1, -1, 1, 0], [0.6, 0.65, 0.4, 0.65, 0.0])


def test_low_quality_turns_background_and_ignored_columns_into_foreground():
    iou = _iou([[0.2, 0.1, 0.0], [0.0, 0.45, 0.3]])
    result = match_boxes(iou, 0.7, 0.3, allow_low_quality=True)
    # GT 0's best is column 0 (background band), GT 1's is column 1 (ignore band).
    _check(result, [0, 1, 1], [1, 1, -1], [0.2, 0.45, 0.3])


def test_low_quality_ties_are_exact_float_equality():
    iou = _iou([[0.5, 0.5 - 1e-12, 0.5, 0.1]])
    result = match_boxes(iou, 0.7, 0.3, allow_low_quality=True)
    assert result.labels.tolist() == [1, -1, 1, 0]


def test_low_quality_ignores_bg_low():
    # A ground truth's best column becomes foreground even below bg_low.
    iou = _iou([[0.05, 0.0, 0.01]])
    result = match_boxes(iou, 0.5, 0.5, bg_low=0.1, allow_low_quality=True)
    assert result.labels.tolist() == [1, -1, -1]


def test_argmax_ties_take_the_lowest_ground_truth_index():
    iou = _iou([[0.2, 0.8, 0.3], [0.8, 0.8, 0.3], [0.8, 0.1, 0.3]])
    result = match_boxes(iou, 0.7, 0.3)
    assert result.matches.tolist() == [1, 0, 0]
    # Also for many rows of zeros (torch.max's own tie order is not relied on).
    zeros = torch.zeros(40, 300)
    assert match_boxes(zeros, 0.7, 0.3).matches.eq(0).all()


def test_no_ground_truth_makes_every_column_background():
    for bg_low in (0.0, 0.1):
        result = match_boxes(torch.zeros(0, 4), 0.7, 0.3, bg_low=bg_low, allow_low_quality=True)
        _check(result, [0, 0, 0, 0], [0, 0, 0, 0], [0.0] * 4)
        assert result.max_iou.dtype == torch.float32


def test_no_columns_gives_empty_outputs():
    for num_gt in (0, 3):
        result = match_boxes(torch.zeros(num_gt, 0, dtype=torch.float64), 0.7, 0.3)
        for field in (result.matches, result.labels, result.max_iou):
            assert field.shape == (0,)
        assert result.matches.dtype == result.labels.dtype == torch.int64
        assert result.max_iou.dtype == torch.float64


def test_result_is_frozen():
    result = match_boxes(_iou([[0.5]]), 0.7, 0.3)
    with pytest.raises(AttributeError):
        result.labels = result.matches  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fg", "bg", "low"),
    [
        (0.3, 0.7, 0.0),  # bg above fg
        (0.7, 0.3, 0.4),  # bg_low above bg
        (1.1, 0.3, 0.0),
        (0.7, 0.3, -0.1),
        (float("nan"), 0.3, 0.0),
    ],
)
def test_invalid_thresholds(fg, bg, low):
    with pytest.raises(ValueError, match=r"0 <= bg_low <= bg_threshold <= fg_threshold <= 1"):
        match_boxes(_iou([[0.5]]), fg, bg, bg_low=low)


def test_invalid_iou_matrix():
    with pytest.raises(ValueError, match=r"Tensor\[G, A\]"):
        match_boxes(torch.zeros(3), 0.7, 0.3)
    with pytest.raises(ValueError, match="floating-point"):
        match_boxes(torch.zeros(2, 3, dtype=torch.int64), 0.7, 0.3)
    with pytest.raises(ValueError, match="NaN"):
        match_boxes(_iou([[0.5, float("nan")]]), 0.7, 0.3)


# ----------------------------------------------------------------------------------------------
# Property test against a loop-by-loop reference
# ----------------------------------------------------------------------------------------------


def _match_reference(
    iou: list[list[float]],
    num_cols: int,
    fg: float,
    bg: float,
    bg_low: float,
    allow_low_quality: bool,
) -> tuple[list[int], list[int], list[float]]:
    """Slow, obviously correct matcher on lists: (matches, labels, max_iou)."""
    if not iou:
        return [0] * num_cols, [0] * num_cols, [0.0] * num_cols
    matches, labels, maxima = [], [], []
    for a in range(num_cols):
        best_g = 0
        for g in range(len(iou)):
            if iou[g][a] > iou[best_g][a]:  # strictly greater: the first maximum wins
                best_g = g
        m = iou[best_g][a]
        if m >= fg:
            label = 1
        elif bg_low <= m < bg:
            label = 0
        else:
            label = -1
        matches.append(best_g)
        labels.append(label)
        maxima.append(m)
    if allow_low_quality:
        for row in iou:
            best = max(row) if row else 0.0
            if best <= 0:
                continue
            for a in range(num_cols):
                if row[a] == best:
                    labels[a] = 1
    return matches, labels, maxima


def test_matches_reference_on_random_matrices_with_ties():
    values = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    for seed in range(400):
        rng = random.Random(seed)
        num_gt = rng.randint(0, 5)
        num_cols = rng.randint(0, 12)
        rows = [[rng.choice(values) for _ in range(num_cols)] for _ in range(num_gt)]
        bg_low, bg, fg = sorted(rng.choice(values) for _ in range(3))
        if rng.random() < 0.5:
            bg_low = 0.0
        allow_low_quality = rng.random() < 0.5
        iou = torch.tensor(rows, dtype=torch.float64).reshape(num_gt, num_cols)
        result = match_boxes(iou, fg, bg, bg_low=bg_low, allow_low_quality=allow_low_quality)
        expected = _match_reference(rows, num_cols, fg, bg, bg_low, allow_low_quality)
        case = f"seed {seed}: {rows} fg={fg} bg={bg} bg_low={bg_low} lq={allow_low_quality}"
        assert result.matches.tolist() == expected[0], case
        assert result.labels.tolist() == expected[1], case
        assert result.max_iou.tolist() == expected[2], case
