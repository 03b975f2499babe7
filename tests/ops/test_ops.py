"""Tests of ``fasterrcnn.ops``: box functions, NMS, RoIAlign (forward and backward) and anchors.

The NMS and RoIAlign implementations are checked against the slow loop-by-loop references in
``slow_ops.py`` and, where torchvision imports, against ``torchvision.ops``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from helpers.slow_ops import batched_nms_reference, nms_reference, roi_align_reference

from fasterrcnn.ops.anchors import cell_anchors, grid_anchors
from fasterrcnn.ops.backend import torchvision_op
from fasterrcnn.ops.boxes import (
    DEFAULT_SCALE_CLAMP,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    nonempty_mask,
)
from fasterrcnn.ops.nms import batched_nms, nms, nms_pure
from fasterrcnn.ops.roi_align import roi_align, roi_align_pure

# Whether nms() hands over to torchvision.ops.nms here (torchvision imports and works).
NMS_USES_TORCHVISION = torchvision_op("nms") is not None


def _t(rows, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# Box functions
# ----------------------------------------------------------------------------------------------


def test_box_iou_hand_computed():
    box = _t([[0, 0, 10, 10]])
    others = _t(
        [
            [0, 0, 10, 10],  # identical
            [5, 0, 15, 10],  # half overlap: 50 / 150
            [5, 5, 15, 10],  # 25 / (100 + 50 - 25)
            [20, 20, 30, 30],  # disjoint
            [10, 0, 20, 10],  # touching along an edge
            [10, 10, 20, 20],  # touching at a corner
            [2, 2, 4, 4],  # contained: 4 / 100
            [-5, -5, 15, 15],  # containing: 100 / 400
            [3, 3, 3, 8],  # zero width, inside
            [5, 5, 5, 5],  # a point, inside
        ]
    )
    expected = _t([[1.0, 1 / 3, 0.2, 0.0, 0.0, 0.0, 0.04, 0.25, 0.0, 0.0]])
    iou = box_iou(box, others)
    assert iou.shape == (1, 10)
    torch.testing.assert_close(iou, expected, rtol=0, atol=1e-7)
    # Symmetric.
    torch.testing.assert_close(box_iou(others, box), expected.T, rtol=0, atol=1e-7)


def test_box_iou_shapes_dtype_and_empty_boxes():
    a = _t([[0, 0, 4, 2], [1, 1, 1, 1], [0, 0, 2, 2]], torch.float64)
    b = _t([[1, 1, 1, 1], [0, 0, 2, 4], [2, 0, 4, 2]], torch.float64)
    iou = box_iou(a, b)
    assert iou.dtype == torch.float64
    assert iou.shape == (3, 3)
    assert torch.isfinite(iou).all()
    expected = _t(
        [
            [0.0, 4 / 12, 4 / 8],  # [0,0,4,2] vs [0,0,2,4]: 2x2 inter, union 8 + 8 - 4
            [0.0, 0.0, 0.0],  # zero-area vs anything (also zero-area vs itself): 0, not NaN
            [0.0, 4 / 8, 0.0],  # touching at x = 2
        ],
        torch.float64,
    )
    torch.testing.assert_close(iou, expected, rtol=0, atol=1e-12)
    assert box_iou(a[:0], b).shape == (0, 3)
    assert box_iou(a, b[:0]).shape == (3, 0)


def test_clip_boxes():
    boxes = _t(
        [
            [-5, -3, 40, 25],  # sticks out everywhere
            [5, 25, 35, -1],  # y beyond h, x2 beyond w
            [1, 2, 3, 4],  # inside: unchanged
        ]
    )
    out = clip_boxes(boxes, (20, 30))  # (h, w)
    torch.testing.assert_close(out, _t([[0, 0, 30, 20], [5, 20, 30, 0], [1, 2, 3, 4]]))
    # Works on Tensor[..., 4] and matches the row-by-row result.
    stacked = torch.stack((boxes, boxes.flip(0)))
    out3 = clip_boxes(stacked, (20.0, 30.0))
    assert out3.shape == (2, 3, 4)
    torch.testing.assert_close(out3[0], out)
    torch.testing.assert_close(out3[1], out.flip(0))


def test_nonempty_mask():
    boxes = _t(
        [
            [0, 0, 1, 1],
            [0, 0, 0, 1],  # zero width
            [0, 0, 1, 0],  # zero height
            [0, 0, 0.5, 2],  # thin
            [2, 2, 1, 3],  # negative width
            [0, 0, 3, 1],  # exactly min_size 1 tall
        ]
    )
    assert nonempty_mask(boxes).tolist() == [True, False, False, True, False, True]
    assert nonempty_mask(boxes, min_size=1.0).tolist() == [True, False, False, False, False, True]
    assert nonempty_mask(boxes, min_size=1.5).tolist() == [False] * 6


# (2, 3, 4, 5): four different weights, so that a weight applied to the wrong delta shows.
DELTA_WEIGHTS = [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0), (2.0, 3.0, 4.0, 5.0)]


@pytest.mark.parametrize("weights", DELTA_WEIGHTS)
def test_encode_hand_computed(weights):
    wx, wy, ww, wh = weights
    reference = _t([[0, 0, 10, 20]], torch.float64)  # centre (5, 10), size 10 x 20
    target = _t([[5, 10, 25, 30]], torch.float64)  # centre (15, 20), size 20 x 20
    deltas = encode_boxes(reference, target, weights)
    expected = _t([[wx * 1.0, wy * 0.5, ww * math.log(2.0), 0.0]], torch.float64)
    torch.testing.assert_close(deltas, expected)
    target = _t([[-5, -10, 5, 70]], torch.float64)  # centre (0, 30), size 10 x 80
    deltas = encode_boxes(reference, target, weights)
    expected = _t([[wx * -0.5, wy * 1.0, 0.0, wh * math.log(4.0)]], torch.float64)
    torch.testing.assert_close(deltas, expected)
    torch.testing.assert_close(
        encode_boxes(reference, reference, weights), torch.zeros(1, 4, dtype=torch.float64)
    )


@pytest.mark.parametrize("weights", DELTA_WEIGHTS)
def test_decode_hand_computed(weights):
    wx, wy, ww, wh = weights
    reference = _t([[0, 0, 10, 20]], torch.float64)
    deltas = _t([[wx * 1.0, wy * 0.5, ww * math.log(2.0), 0.0]], torch.float64)
    # centre (5 + 1 * 10, 10 + 0.5 * 20) = (15, 20); size (10 * 2, 20 * 1) = (20, 20)
    out = decode_boxes(reference, deltas, weights)
    torch.testing.assert_close(out, _t([[5, 10, 25, 30]], torch.float64))
    # centre (5 - 0.5 * 10, 10 + 1 * 20) = (0, 30); size (10 * 1, 20 * 4) = (10, 80)
    deltas = _t([[wx * -0.5, wy * 1.0, 0.0, wh * math.log(4.0)]], torch.float64)
    out = decode_boxes(reference, deltas, weights)
    torch.testing.assert_close(out, _t([[-5, -10, 5, 70]], torch.float64))


@pytest.mark.parametrize("weights", [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)])
def test_encode_decode_round_trip(weights):
    g = torch.Generator().manual_seed(0)
    n = 64
    ref_xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 500
    ref_wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 200 + 1
    tgt_xy = ref_xy + (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * 100
    tgt_wh = ref_wh * torch.exp((torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * 4)
    reference = torch.cat((ref_xy, ref_xy + ref_wh), dim=1)
    target = torch.cat((tgt_xy, tgt_xy + tgt_wh), dim=1)

    deltas = encode_boxes(reference, target, weights)
    for clamp in (DEFAULT_SCALE_CLAMP, None):
        torch.testing.assert_close(decode_boxes(reference, deltas, weights, clamp), target)
    # Tensor[N, K, 4] deltas: each of the K columns decodes on its own.
    stacked = torch.stack((deltas, torch.zeros_like(deltas), deltas.flip(0)), dim=1)
    out = decode_boxes(reference, stacked, weights)
    assert out.shape == (n, 3, 4)
    torch.testing.assert_close(out[:, 0], target)
    torch.testing.assert_close(out[:, 1], reference)
    torch.testing.assert_close(out[:, 2], decode_boxes(reference, deltas.flip(0), weights))
    # And back.
    torch.testing.assert_close(encode_boxes(reference, out[:, 0], weights), deltas)


def test_decode_scale_clamp():
    assert DEFAULT_SCALE_CLAMP == pytest.approx(math.log(1000.0 / 16))
    reference = _t([[0, 0, 16, 16]], torch.float64)  # centre (8, 8), size 16
    ones = (1.0, 1.0, 1.0, 1.0)
    deltas = _t([[0.0, 0.0, 10.0, -10.0]], torch.float64)

    # Default: dw clamped to log(1000 / 16), so the width is 16 * 62.5 = 1000; dh < 0 untouched.
    out = decode_boxes(reference, deltas, ones)
    small = 8 * math.exp(-10.0)
    torch.testing.assert_close(out, _t([[8 - 500, 8 - small, 8 + 500, 8 + small]], torch.float64))

    # scale_clamp=None: no clamping at all.
    big = 8 * math.exp(10.0)
    out = decode_boxes(reference, deltas, ones, scale_clamp=None)
    torch.testing.assert_close(out, _t([[8 - big, 8 - small, 8 + big, 8 + small]], torch.float64))

    # Only large dw/dh are clamped, not large negative ones.
    out = decode_boxes(reference, _t([[0.0, 0.0, -10.0, 10.0]], torch.float64), ones)
    torch.testing.assert_close(out, _t([[8 - small, 8 - 500, 8 + small, 8 + 500]], torch.float64))

    # A custom clamp.
    out = decode_boxes(reference, deltas, ones, scale_clamp=1.0)
    e8 = 8 * math.e
    torch.testing.assert_close(out, _t([[8 - e8, 8 - small, 8 + e8, 8 + small]], torch.float64))

    # The clamp applies after dividing by the weights: 25 / 5 = 5 > clamp, 20 / 5 = 4 < clamp.
    weights = (10.0, 10.0, 5.0, 5.0)
    deltas = _t([[0.0, 0.0, 25.0, 20.0]], torch.float64)
    h4 = 8 * math.exp(4.0)
    out = decode_boxes(reference, deltas, weights)
    torch.testing.assert_close(out, _t([[8 - 500, 8 - h4, 8 + 500, 8 + h4]], torch.float64))
    w5 = 8 * math.exp(5.0)
    out = decode_boxes(reference, deltas, weights, scale_clamp=None)
    torch.testing.assert_close(out, _t([[8 - w5, 8 - h4, 8 + w5, 8 + h4]], torch.float64))


# ----------------------------------------------------------------------------------------------
# NMS
# ----------------------------------------------------------------------------------------------

# Integer coordinates keep every IoU an exact ratio of small integers, so float32 and float64
# agree on which side of the threshold each pair lies: the comparisons below can be exact.
# Such data also hold pairs whose IoU *is* a threshold (say 3 / 10): by the contract
# ("removed when IoU > threshold") they are not suppressed, which nms_pure gets right but
# torchvision.ops.nms does not at 0.3 (see test_nms_exact_threshold_is_not_suppressed). The tests
# of the dispatching wrappers, which use torchvision when it imports, therefore run on data
# with those exact ties nudged away (``exact_ties=False``).

NMS_THRESHOLDS = ((3, 10), (1, 2), (7, 10))


def _nudge_exact_ties(boxes: torch.Tensor) -> torch.Tensor:
    """Widen boxes (integer) by 1 px until no pair has an IoU of exactly 0.3, 0.5 or 0.7."""
    b = boxes.numpy().astype(np.int64)  # numpy: exact integer arithmetic, cheap on one thread
    for _ in range(200):
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        wh = np.clip(
            np.minimum(b[:, None, 2:], b[None, :, 2:]) - np.maximum(b[:, None, :2], b[None, :, :2]),
            0,
            None,
        )
        inter = wh[..., 0] * wh[..., 1]
        union = area[:, None] + area[None, :] - inter
        tie = np.zeros(inter.shape, dtype=bool)
        for num, den in NMS_THRESHOLDS:
            tie |= (den * inter == num * union) & (inter > 0)
        tied = np.triu(tie, k=1).any(axis=0)
        if not tied.any():
            return torch.from_numpy(b)
        b[tied, 2] += 1
    raise AssertionError("could not nudge the exact ties away")


@functools.cache
def _nms_case(
    seed: int, n: int, kind: str, ties: bool, exact_ties: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (float32, integer coordinates) and scores for one random NMS case.

    kind "random": independent boxes; "clusters": many near-duplicates (jitter of +-2 px around
    a few centres); "chain": runs of boxes each shifted by 1 px from the previous one, ranked
    along the run, so every kept/suppressed decision depends on the one before (long chains).
    ``ties``: scores take only 4 values (many equal scores). ``exact_ties=False``: no pair has
    an IoU of exactly 0.3, 0.5 or 0.7.
    """
    g = torch.Generator().manual_seed(1000 * seed + n)
    if kind == "random":
        xy = torch.randint(0, 100, (n, 2), generator=g)
        wh = torch.randint(1, 40, (n, 2), generator=g)
        boxes = torch.cat((xy, xy + wh), dim=1)
        scores = torch.rand(n, generator=g)
    elif kind == "clusters":
        k = max(1, n // 10)
        xy = torch.randint(0, 100, (k, 2), generator=g)
        wh = torch.randint(8, 40, (k, 2), generator=g)
        centres = torch.cat((xy, xy + wh), dim=1)
        assign = torch.randint(0, k, (n,), generator=g)
        boxes = centres[assign] + torch.randint(-2, 3, (n, 4), generator=g)
        scores = torch.rand(n, generator=g)
    elif kind == "chain":
        rows = []
        while len(rows) < n:
            length = int(torch.randint(5, 80, (1,), generator=g))
            x0, y0 = (int(v) for v in torch.randint(0, 50, (2,), generator=g))
            w, h = (int(v) for v in torch.randint(2, 14, (2,), generator=g))
            along_x = bool(torch.randint(0, 2, (1,), generator=g))
            for i in range(length):
                dx, dy = (i, 0) if along_x else (0, i)
                rows.append([x0 + dx, y0 + dy, x0 + dx + w, y0 + dy + h])
        boxes = torch.tensor(rows[:n])
        # Decreasing along each chain (and over the whole list), with a little noise.
        scores = torch.linspace(1.0, 0.0, n) + torch.rand(n, generator=g) * 1e-3
    else:
        raise ValueError(kind)
    if ties:
        scores = torch.floor(scores * 4) / 4
    if not exact_ties:
        boxes = _nudge_exact_ties(boxes)
    return boxes.to(torch.float32), scores.to(torch.float32)


@functools.cache
def _nms_expected(
    seed: int, n: int, kind: str, ties: bool, threshold: float, exact_ties: bool = True
) -> list[int]:
    boxes, scores = _nms_case(seed, n, kind, ties, exact_ties)
    return nms_reference(boxes, scores, threshold)


NMS_CASES = [
    pytest.param(seed, n, kind, ties, id=f"{kind}-n{n}-seed{seed}{'-ties' if ties else ''}")
    for n in (0, 1, 50, 500)
    for kind in ("random", "clusters", "chain")
    for seed in (0, 1, 2)
    for ties in (False, True)
    # Tied scores along a chain rank it as before (equal scores keep input order), so chains
    # get no tied variant.
    if not (n <= 1 and (seed > 0 or kind != "random")) and not (ties and kind == "chain")
]
# The full grid runs against nms_pure; the wrappers get one seed (they add no arithmetic of
# their own without torchvision).
NMS_CASES_SEED0 = [p for p in NMS_CASES if p.values[0] == 0]


def _check_nms(keep: torch.Tensor, expected: list[int], scores: torch.Tensor) -> None:
    assert keep.dtype == torch.int64
    assert keep.tolist() == expected
    assert (scores[keep][1:] <= scores[keep][:-1]).all()


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize(("seed", "n", "kind", "ties"), NMS_CASES)
def test_nms_pure_matches_greedy(seed, n, kind, ties, threshold):
    boxes, scores = _nms_case(seed, n, kind, ties)
    expected = _nms_expected(seed, n, kind, ties, threshold)
    _check_nms(nms_pure(boxes, scores, threshold), expected, scores)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize(("seed", "n", "kind", "ties"), NMS_CASES_SEED0)
def test_nms_matches_greedy(seed, n, kind, ties, threshold):
    boxes, scores = _nms_case(seed, n, kind, ties, exact_ties=False)
    expected = _nms_expected(seed, n, kind, ties, threshold, exact_ties=False)
    _check_nms(nms(boxes, scores, threshold), expected, scores)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize(("seed", "n", "kind", "ties"), NMS_CASES_SEED0)
def test_batched_nms_single_group_matches_greedy(seed, n, kind, ties, threshold):
    boxes, scores = _nms_case(seed, n, kind, ties, exact_ties=False)
    expected = _nms_expected(seed, n, kind, ties, threshold, exact_ties=False)
    groups = torch.full((n,), 7, dtype=torch.int64)
    _check_nms(batched_nms(boxes, scores, groups, threshold), expected, scores)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize(
    ("seed", "n", "kind", "ties"), [p for p in NMS_CASES if p.values[0] < 2 and not p.values[3]]
)
def test_batched_nms_matches_greedy_per_group(seed, n, kind, ties, threshold):
    boxes, scores = _nms_case(seed, n, kind, ties, exact_ties=False)
    groups = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(seed))
    expected = batched_nms_reference(boxes, scores, groups, threshold)
    _check_nms(batched_nms(boxes, scores, groups, threshold), expected, scores)


def test_batched_nms_groups_do_not_suppress_each_other():
    box = [10.0, 10.0, 30.0, 30.0]
    boxes = _t([box, box, [11, 10, 31, 30], box, box])
    scores = _t([0.9, 0.8, 0.7, 0.6, 0.5])
    groups = torch.tensor([0, 1, 0, 2, 1])
    # Within group 0, box 2 overlaps box 0 (IoU 19/21) and goes; box 4 duplicates box 1.
    assert batched_nms(boxes, scores, groups, 0.5).tolist() == [0, 1, 3]
    # Identical boxes in different groups are all kept.
    assert batched_nms(boxes, scores, torch.arange(5), 0.5).tolist() == [0, 1, 2, 3, 4]
    # The same boxes in one group: only the best survives.
    assert batched_nms(boxes, scores, torch.zeros(5, dtype=torch.int64), 0.5).tolist() == [0]
    assert batched_nms(boxes[:0], scores[:0], groups[:0], 0.5).tolist() == []


def test_batched_nms_equal_scores_keep_input_order():
    boxes = _t([[0, 0, 1, 1], [5, 5, 6, 6], [10, 10, 11, 11]])
    scores = _t([1.0, 1.0, 1.0])
    groups = torch.tensor([1, 0, 1])
    # Nothing overlaps; with equal scores the input order should stand (as in nms()).
    assert batched_nms(boxes, scores, groups, 0.5).tolist() == [0, 1, 2]


def test_nms_hand_computed_chain_and_ties():
    # Each box overlaps its neighbour by IoU 4/6 and the next-but-one by 3/7: greedy NMS at 0.5
    # keeps every other box, which needs the whole chain to be resolved in order.
    boxes = _t([[i, 0, i + 5, 5] for i in range(9)])
    scores = torch.linspace(1, 0.1, 9)
    assert nms_pure(boxes, scores, 0.5).tolist() == [0, 2, 4, 6, 8]
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 4, 6, 8]
    # Equal scores: input order decides.
    assert nms_pure(boxes, torch.ones(9), 0.5).tolist() == [0, 2, 4, 6, 8]
    assert nms_pure(boxes.flip(0), torch.ones(9), 0.5).tolist() == [0, 2, 4, 6, 8]
    # Equal scores of duplicates: the first one wins.
    dup = _t([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4]])
    assert nms_pure(dup, _t([0.5, 0.7, 0.7]), 0.5).tolist() == [1]
    assert nms_pure(boxes[:0], scores[:0], 0.5).tolist() == []


def test_nms_pure_exact_threshold_is_not_suppressed():
    # IoU exactly 3/10 = 0.3 and 7/10 = 0.7: removal needs IoU > threshold, so both stay.
    scores = _t([1.0, 0.5])
    for iou, box in ((0.3, [0, 0, 3, 1]), (0.7, [0, 0, 7, 1])):
        boxes = _t([[0, 0, 10, 1], box])
        assert box_iou(boxes[:1], boxes[1:]).item() == pytest.approx(iou)
        assert nms_pure(boxes, scores, iou).tolist() == [0, 1]
        assert nms_pure(boxes, scores, iou - 1e-3).tolist() == [0]


@pytest.mark.xfail(
    NMS_USES_TORCHVISION,
    strict=True,
    reason="with torchvision, nms() delegates to torchvision.ops.nms, which compares the "
    "float32 IoU with the threshold as a double: an IoU of exactly 0.3 (float32 0.30000001) "
    "is removed although the contract says 'IoU > threshold'",
)
def test_nms_exact_threshold_is_not_suppressed():
    boxes = _t([[0, 0, 10, 1], [0, 0, 3, 1]])  # IoU exactly 0.3
    assert nms(boxes, _t([1.0, 0.5]), 0.3).tolist() == [0, 1]


# ----------------------------------------------------------------------------------------------
# RoIAlign
# ----------------------------------------------------------------------------------------------


def _roi_case(
    seed: int, spatial_scale: float, num_images: int = 2, height: int = 9, width: int = 11
):
    """Features (float32) and RoIs that cover the awkward cases, in image pixels."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(num_images, 3, height, width, generator=g)
    s = 1.0 / spatial_scale  # image pixels per feature pixel
    img_h, img_w = height * s, width * s
    fixed = [
        [0, 0.0, 0.0, img_w, img_h],  # the whole image
        [1, 0.0, 0.0, 2.3 * s, 1.7 * s],  # touches the top-left border
        [0, img_w - 3.1 * s, img_h - 2.2 * s, img_w, img_h],  # touches the bottom-right border
        [1, -2.5 * s, -1.5 * s, 3.2 * s, 2.6 * s],  # partly outside (top-left)
        [0, img_w - 2.4 * s, 3.3 * s, img_w + 3.3 * s, img_h + 1.9 * s],  # partly outside
        [1, -0.8 * s, 2.1 * s, -0.2 * s, 4.4 * s],  # fully outside, within one pixel
        [0, img_w + 0.3 * s, -0.9 * s, img_w + 0.7 * s, -0.1 * s],  # outside, near corner
        [1, -9.0 * s, -7.0 * s, -4.0 * s, -3.0 * s],  # far outside
        [0, 3.3 * s, 4.1 * s, 3.6 * s, 4.3 * s],  # tiny: 0.3 x 0.2 feature pixels
        [1, 5.05 * s, 1.5 * s, 5.15 * s, 6.5 * s],  # thin
        [0, 0.2 * s, 0.7 * s, 0.25 * s, 0.72 * s],  # tiny, near the corner
    ]
    rand = []
    for _ in range(8):
        u = torch.rand(5, generator=g).tolist()
        x1 = (u[1] * 1.4 - 0.2) * img_w
        y1 = (u[2] * 1.4 - 0.2) * img_h
        rand.append([float(u[0] < 0.5), x1, y1, x1 + u[3] * 0.6 * img_w, y1 + u[4] * 0.6 * img_h])
    rois = torch.tensor(fixed + rand, dtype=torch.float32)
    if num_images == 1:
        rois[:, 0] = 0
    return features, rois


@pytest.mark.parametrize("spatial_scale", [1 / 4, 1 / 8])
@pytest.mark.parametrize("border", ["clamp", "zero"])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_pure_matches_reference(aligned, sampling_ratio, border, spatial_scale):
    features, rois = _roi_case(0, spatial_scale)
    args = ((3, 4), spatial_scale, sampling_ratio, aligned, border)
    expected = roi_align_reference(features, rois, *args)
    out = roi_align_pure(features, rois, *args)
    assert out.shape == (rois.shape[0], 3, 3, 4)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # The dispatching entry point (torchvision for "clamp" when it imports) agrees too.
    torch.testing.assert_close(
        roi_align(features, rois, (3, 4), *args[1:]), expected, rtol=1e-5, atol=1e-5
    )


def test_roi_align_far_outside_is_zero_and_batch_index_is_used():
    features, rois = _roi_case(1, 1 / 4)
    for border in ("clamp", "zero"):
        out = roi_align_pure(features, rois, (3, 4), 1 / 4, 2, True, border)
        assert (out[7] == 0).all()  # the far-outside RoI
        assert out.abs().sum() > 0
    # Moving every RoI to the other image gives what the other image's map alone gives.
    swapped = rois.clone()
    swapped[:, 0] = 1 - swapped[:, 0]
    out = roi_align_pure(features, swapped, (3, 4), 1 / 4, 0, True, "zero")
    ref = roi_align_pure(features.flip(0), rois, (3, 4), 1 / 4, 0, True, "zero")
    torch.testing.assert_close(out, ref)


def test_roi_align_many_rois_one_layout():
    # More RoIs on one image than fit one internal chunk (256), all with the same sampling
    # layout, plus a few on the other image in between.
    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 2, 6, 7, generator=g)
    n = 600
    xy = torch.rand(n, 2, generator=g) * 30 - 3
    wh = torch.rand(n, 2, generator=g) * 12 + 0.1
    image = (torch.rand(n, 1, generator=g) < 0.1).float()
    rois = torch.cat((image, xy, xy + wh), dim=1)
    for border in ("clamp", "zero"):
        expected = roi_align_reference(features, rois, (1, 2), 1 / 4, 1, True, border)
        out = roi_align_pure(features, rois, (1, 2), 1 / 4, 1, True, border)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_roi_align_hand_computed_border():
    # Box (0, 0, 1, 1) on a map of ones, aligned: starts at -0.5 with 2 x 2 bins of 0.5 px and
    # 2 x 2 points per bin. The corner bin's points lie at -0.375 and -0.125 along each axis.
    features = torch.ones(1, 1, 4, 4)
    rois = _t([[0, 0, 0, 1, 1]])
    # "zero": each axis weighs 0.625 and 0.875 (mean 0.75) -> corner bin 0.75 ** 2 = 0.5625.
    out = roi_align_pure(features, rois, (2, 2), 1.0, 2, True, "zero")
    torch.testing.assert_close(out[0, 0], _t([[0.5625, 0.75], [0.75, 1.0]]), rtol=0, atol=1e-6)
    out = roi_align(features, rois, (2, 2), 1.0, 2, True, border="zero")
    torch.testing.assert_close(out[0, 0], _t([[0.5625, 0.75], [0.75, 1.0]]), rtol=0, atol=1e-6)
    # "clamp": points within one pixel of the map are clamped onto it -> all 1.
    for fn in (roi_align_pure, roi_align):
        out = fn(features, rois, (2, 2), 1.0, 2, True, "clamp")
        torch.testing.assert_close(out[0, 0], torch.ones(2, 2), rtol=0, atol=1e-6)
    # A half-pixel box has only the -0.25 point: 0.75 ** 2.
    out = roi_align_pure(features, _t([[0, 0, 0, 0.5, 0.5]]), (1, 1), 1.0, 1, True, "zero")
    assert out.item() == pytest.approx(0.5625, abs=1e-6)


def test_roi_align_hand_computed_ramp():
    # f(y, x) = 10 y + x is reproduced exactly by bilinear sampling inside the map.
    ys, xs = torch.meshgrid(torch.arange(5.0), torch.arange(6.0), indexing="ij")
    features = (10 * ys + xs)[None, None]
    rois = _t([[0, 1, 2, 4, 3]])  # not aligned: 3 x 1 px starting at (x, y) = (1, 2)
    out = roi_align_pure(features, rois, (1, 3), 1.0, 1, False, "zero")
    torch.testing.assert_close(out[0, 0], _t([[26.5, 27.5, 28.5]]))
    # Aligned shifts by -0.5 px; adaptive sampling uses ceil(1 / 1) = 1 point per bin.
    out = roi_align_pure(features, rois, (1, 3), 1.0, 0, True, "clamp")
    torch.testing.assert_close(out[0, 0], _t([[21.0, 22.0, 23.0]]))
    # spatial_scale 1/2 on doubled image coordinates gives the same.
    out = roi_align_pure(features, rois * _t([1, 2, 2, 2, 2]), (1, 3), 0.5, 0, True, "clamp")
    torch.testing.assert_close(out[0, 0], _t([[21.0, 22.0, 23.0]]))
    # Not aligned, RoI smaller than 1 px: widened to 1 px from its start.
    out = roi_align_pure(features, _t([[0, 2, 1, 2.2, 1.1]]), (1, 1), 1.0, 2, False, "zero")
    assert out.item() == pytest.approx(10 * 1.5 + 2.5, abs=1e-5)


def test_roi_align_empty():
    features = torch.randn(1, 3, 5, 5)
    out = roi_align_pure(features, torch.zeros(0, 5), (7, 7), 0.25, 2, True, "zero")
    assert out.shape == (0, 3, 7, 7)


# ----------------------------------------------------------------------------------------------
# RoIAlign backward
# ----------------------------------------------------------------------------------------------


def _grad_case():
    features, rois = _roi_case(2, 1 / 4, num_images=2, height=5, width=6)
    features = features.double()
    # A few RoIs: inside, partly outside, tiny, far outside.
    rois = rois[[0, 3, 4, 8, 7, 12]].double()
    return features, rois


@pytest.mark.parametrize("border", ["clamp", "zero"])
def test_roi_align_gradcheck(border):
    features, rois = _grad_case()
    features.requires_grad_(True)
    for aligned, sampling in ((True, 2), (False, 0)):
        assert torch.autograd.gradcheck(
            lambda f, a=aligned, s=sampling: roi_align_pure(f, rois, (2, 3), 1 / 4, s, a, border),
            (features,),
        )


@pytest.mark.parametrize("border", ["clamp", "zero"])
def test_roi_align_grad_matches_reference(border):
    features, rois = _grad_case()
    g = torch.Generator().manual_seed(5)
    upstream = torch.randn(rois.shape[0], 3, 2, 3, generator=g, dtype=torch.float64)
    grads = []
    for fn in (roi_align_pure, roi_align_reference):
        f = features.clone().requires_grad_(True)
        (fn(f, rois, (2, 3), 1 / 4, 2, True, border) * upstream).sum().backward()
        grads.append(f.grad)
    assert grads[1].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# torchvision
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_pure_matches_torchvision(aligned, sampling_ratio):
    tv = pytest.importorskip("torchvision")
    g = torch.Generator().manual_seed(11)
    features = torch.randn(2, 4, 20, 25, generator=g)
    n = 200
    xy = torch.rand(n, 2, generator=g) * 120 - 10
    wh = torch.rand(n, 2, generator=g) * 60 + 0.5
    rois = torch.cat((torch.randint(0, 2, (n, 1), generator=g).float(), xy, xy + wh), dim=1)
    _, fixed = _roi_case(0, 1 / 4)
    rois = torch.cat((rois, fixed))
    for scale in (1 / 4, 1 / 8):
        expected = tv.ops.roi_align(features, rois, (7, 6), scale, sampling_ratio, aligned)
        out = roi_align_pure(features, rois, (7, 6), scale, sampling_ratio, aligned, "clamp")
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_roi_align_pure_grad_matches_torchvision():
    tv = pytest.importorskip("torchvision")
    features, rois = _grad_case()
    upstream = torch.randn(rois.shape[0], 3, 2, 3, dtype=torch.float64)
    grads = []
    for fn in (roi_align_pure, tv.ops.roi_align):
        f = features.clone().requires_grad_(True)
        (fn(f, rois, (2, 3), 1 / 4, 2, True) * upstream).sum().backward()
        grads.append(f.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_roi_align_empty_roi_with_adaptive_sampling_pools_to_zero():
    # ceil(0 / bins) = 0 sample points per bin: nothing is averaged, the output is 0.
    features = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = _t([[0, 4.0, 4.0, 4.0, 4.0], [0, 1.0, 1.0, 3.0, 3.0]])
    out = roi_align_pure(features, rois, (1, 1), 1.0, 0, True, "clamp")
    assert out[0].item() == 0.0
    assert out[1].item() == pytest.approx(7.5)  # the centre of a 2x2-pixel box: mean of 5, 6, 9, 10


def test_roi_align_pure_zero_size_roi_matches_torchvision():
    tv = pytest.importorskip("torchvision")
    features = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = _t([[0, 4.0, 4.0, 4.0, 4.0]])
    expected = tv.ops.roi_align(features, rois, (1, 1), 1.0, 0, True)
    torch.testing.assert_close(
        roi_align_pure(features, rois, (1, 1), 1.0, 0, True, "clamp"), expected
    )


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_pure_matches_torchvision(threshold):
    tv = pytest.importorskip("torchvision")
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        n = 400
        xy = torch.rand(n, 2, generator=g) * 100
        wh = torch.rand(n, 2, generator=g) * 40 + 1
        boxes = torch.cat((xy, xy + wh), dim=1)
        # Plus near-duplicates of the first 100.
        boxes = torch.cat((boxes, boxes[:100] + torch.rand(100, 4, generator=g) * 2))
        scores = torch.rand(boxes.shape[0], generator=g)
        expected = tv.ops.nms(boxes, scores, threshold)
        assert torch.equal(nms_pure(boxes, scores, threshold), expected)
        assert nms_pure(boxes, scores, threshold).tolist() == nms_reference(
            boxes, scores, threshold
        )


# ----------------------------------------------------------------------------------------------
# Anchors
# ----------------------------------------------------------------------------------------------


def test_cell_anchors_rounded_matches_torchvision_values():
    cells = cell_anchors((32,), (0.5, 1.0, 2.0), "rounded")
    assert cells.dtype == torch.float32
    expected = _t([[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])
    assert torch.equal(cells, expected)
    # Ratio-major with several sizes: (r0, s0), (r0, s1), (r1, s0), ...
    cells = cell_anchors((32, 64), (0.5, 1.0), "rounded")
    expected = _t([[-23, -11, 23, 11], [-45, -23, 45, 23], [-16, -16, 16, 16], [-32, -32, 32, 32]])
    assert torch.equal(cells, expected)


def test_cell_anchors_legacy_plus_one_p2():
    cells = cell_anchors((32,), (0.5, 1.0, 2.0), "legacy_plus_one")
    # Centred on (16 - 1) / 2 = 7.5 before the grid offset.
    torch.testing.assert_close((cells[:, :2] + cells[:, 2:]) / 2, torch.full((3, 2), 7.5))
    anchors = grid_anchors(cells, (3, 5), stride=(4, 4), offset=(-8, -8))
    assert anchors.shape == (3 * 5 * 3, 4)
    expected = _t([[-23, -12, 22, 11], [-16, -16, 15, 15], [-11, -22, 10, 21]])
    assert torch.equal(anchors[:3], expected)
    # The next cell along x is 4 px to the right.
    assert torch.equal(anchors[3:6], expected + _t([4, 0, 4, 0]))


def test_cell_anchors_exact():
    sizes, ratios = (32.0, 64.0), (0.5, 1.0, 2.0)
    cells = cell_anchors(sizes, ratios, "exact")
    rows = []
    for r in ratios:
        for s in sizes:
            w = math.sqrt(s * s / r)
            h = r * w
            rows.append([-w / 2, -h / 2, w / 2, h / 2])
    assert cells.dtype == torch.float32
    torch.testing.assert_close(cells, _t(rows), rtol=1e-6, atol=1e-5)
    # Not rounded: ratio 0.5 of size 32 is 45.2548 x 22.6274.
    assert cells[0].tolist() == pytest.approx([-22.6274, -11.3137, 22.6274, 11.3137], abs=1e-4)
    # h / w is the ratio and the area is size ** 2.
    wh = cells[:, 2:] - cells[:, :2]
    torch.testing.assert_close(wh[:, 1] / wh[:, 0], _t([r for r in ratios for _ in sizes]))
    torch.testing.assert_close(wh[:, 0] * wh[:, 1], _t([s * s for _ in ratios for s in sizes]))


def test_cell_anchors_legacy_plus_one_rounds_half_away_from_zero():
    # MegEngine 0.x rounds with MegDNN's ROUND (half away from zero), not numpy's half-to-even.
    # base 16, ratio 0.625: w = round(sqrt(256 / 0.625)) = round(20.24) = 20, h = round(12.5) = 13,
    # scaled by 32 / 16 -> 40 x 26 around 7.5.
    cells = cell_anchors((32,), (0.625,), "legacy_plus_one")
    assert cells.tolist() == [[-12.0, -5.0, 27.0, 20.0]]


def test_grid_anchors_order():
    cells = _t([[-1, -2, 1, 2], [-3, -3, 3, 3]])
    height, width = 2, 3
    # stride and offset are (y, x): different on purpose so that a swap shows.
    anchors = grid_anchors(cells, (height, width), stride=(10, 100), offset=(1, 2))
    assert anchors.shape == (height * width * 2, 4)

    def shifted(a, i, j):
        sx, sy = j * 100 + 2, i * 10 + 1
        return (cells[a] + _t([sx, sy, sx, sy])).tolist()

    assert anchors[0].tolist() == shifted(0, 0, 0) == [1, -1, 3, 3]
    assert anchors[1].tolist() == shifted(1, 0, 0) == [-1, -2, 5, 4]
    assert anchors[2].tolist() == shifted(0, 0, 1) == [101, -1, 103, 3]
    assert anchors[6].tolist() == shifted(0, 1, 0) == [1, 9, 3, 13]
    assert anchors[11].tolist() == shifted(1, 1, 2) == [199, 8, 205, 14]
    for i in range(height):
        for j in range(width):
            for a in range(2):
                assert anchors[(i * width + j) * 2 + a].tolist() == shifted(a, i, j)
