"""The backward pass of ``roi_align_pure`` with respect to the features.

RoIAlign is linear in the features: ``out = J @ features`` for a fixed matrix ``J`` that
depends on the RoIs only. The gradient is checked two ways: against finite differences
(``torch.autograd.gradcheck`` in float64), and against the explicit adjoint ``J^T @ upstream``
with ``J`` built column by column from one-hot feature maps.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from fasterrcnn.ops.roi_align import roi_align_pure

SHAPE = (2, 4, 9, 11)  # N, C, H, W: a 22 x 18 pixel image at stride 2
SCALE = 0.5
OUTPUT = (3, 3)

# (batch_index, x1, y1, x2, y2) in image pixels; the map covers [0, 22] x [0, 18].
ROIS = torch.tensor(
    [
        [0, -6.0, -4.0, 10.0, 8.0],  # partly outside, top left
        [1, 12.0, 6.0, 30.0, 24.0],  # partly outside, bottom right
        [1, 2.0, 3.0, 9.0, 7.0],  # inside
        [0, 16.0, 12.0, 26.0, 20.0],  # partly outside, right and bottom
        [1, 5.0, 5.0, 5.5, 6.0],  # tiny, inside
        [0, 40.0, 40.0, 50.0, 50.0],  # far outside: all zero
        [0, 4.0, 4.0, 4.0, 4.0],  # empty: no sample points when sampling is adaptive
        [1, -3.0, 1.0, 25.0, 17.0],  # nearly the whole map, points within a pixel of the border
        [0, 2.0, 2.0, 9.0, 9.0],  # overlaps the first RoI: gradients add up
    ],
    dtype=torch.float64,
)
INSIDE = [2, 4]  # RoIs whose sample points all lie in [0, size - 1]: every bin's weights sum to 1
FAR_OUTSIDE = 5
EMPTY = 6

CONFIGS = list(itertools.product(["clamp", "zero"], [True, False], [2, 0]))


def _features(seed: int = 0, shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _pool(features, border, aligned, sampling_ratio, rois=ROIS):
    return roi_align_pure(features, rois, OUTPUT, SCALE, sampling_ratio, aligned, border)


def _dense_jacobian(border, aligned, sampling_ratio) -> torch.Tensor:
    """Tensor[K * C * ph * pw, N * C * H * W]: column j is the output for the j-th one-hot map."""
    numel = torch.Size(SHAPE).numel()
    columns = []
    with torch.no_grad():
        for j in range(numel):
            one_hot = torch.zeros(numel, dtype=torch.float64)
            one_hot[j] = 1.0
            columns.append(_pool(one_hot.view(SHAPE), border, aligned, sampling_ratio).flatten())
    return torch.stack(columns, dim=1)


def _vjp(features, upstream, border, aligned, sampling_ratio) -> torch.Tensor:
    features = features.detach().clone().requires_grad_(True)
    (_pool(features, border, aligned, sampling_ratio) * upstream).sum().backward()
    assert features.grad is not None
    return features.grad


@pytest.mark.parametrize(("border", "aligned", "sampling_ratio"), CONFIGS)
def test_gradcheck_features(border, aligned, sampling_ratio):
    features = _features().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda f: _pool(f, border, aligned, sampling_ratio), (features,), fast_mode=True
    )


@pytest.mark.parametrize(
    ("border", "aligned", "sampling_ratio"), [("clamp", True, 0), ("zero", False, 2)]
)
def test_gradcheck_features_full_jacobian(border, aligned, sampling_ratio):
    # Every entry of the Jacobian (fast_mode checks random projections only); one channel
    # keeps it quick.
    features = _features(shape=(2, 1, 9, 11)).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda f: _pool(f, border, aligned, sampling_ratio), (features,)
    )


@pytest.mark.parametrize(("border", "aligned", "sampling_ratio"), CONFIGS)
def test_gradient_is_the_adjoint_of_the_dense_map(border, aligned, sampling_ratio):
    jacobian = _dense_jacobian(border, aligned, sampling_ratio)
    num_rois, (n, c, h, w), (ph, pw) = ROIS.shape[0], SHAPE, OUTPUT
    features = _features(1)

    # The forward pass is the dense map.
    out = _pool(features, border, aligned, sampling_ratio)
    torch.testing.assert_close(out.flatten(), jacobian @ features.flatten(), rtol=0, atol=1e-12)

    # Backward: the sum over RoIs and bins of upstream times the weights.
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        upstream = torch.randn(num_rois, c, ph, pw, generator=g, dtype=torch.float64)
        grad = _vjp(features, upstream, border, aligned, sampling_ratio)
        expected = (jacobian.T @ upstream.flatten()).view(SHAPE)
        assert expected.abs().sum() > 0
        torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)

    # Structure of the weights: nonnegative; a bin reads its own channel of its RoI's image
    # only, with the same weights in every channel.
    weights = jacobian.view(num_rois, c, ph, pw, n, c, h, w)
    assert (weights >= 0).all()
    for r, image in enumerate(ROIS[:, 0].long().tolist()):
        for other in range(n):
            if other != image:
                assert (weights[r, :, :, :, other] == 0).all()
        for ci, cj in itertools.product(range(c), repeat=2):
            block = weights[r, ci, :, :, image, cj]
            if ci == cj:
                torch.testing.assert_close(block, weights[r, 0, :, :, image, 0], rtol=0, atol=0)
            else:
                assert (block == 0).all()

    # Partition of unity inside the map; nothing for a RoI far outside.
    bin_sums = weights.sum(dim=(4, 5, 6, 7))  # (K, C, ph, pw)
    torch.testing.assert_close(bin_sums[INSIDE], torch.ones_like(bin_sums[INSIDE]))
    assert (bin_sums[FAR_OUTSIDE] == 0).all()
    if sampling_ratio == 0 and aligned:
        assert (bin_sums[EMPTY] == 0).all()  # ceil(0 / 3) = 0 sample points per bin
    else:
        torch.testing.assert_close(bin_sums[EMPTY], torch.ones_like(bin_sums[EMPTY]))


@pytest.mark.parametrize("border", ["clamp", "zero"])
def test_gradient_of_channels_last_features(border):
    # The map is read through a view when it is channels-last; the gradient must not change.
    features = _features(3)
    upstream = torch.randn(ROIS.shape[0], SHAPE[1], *OUTPUT, dtype=torch.float64)
    expected = _vjp(features, upstream, border, True, 2)
    channels_last = features.contiguous(memory_format=torch.channels_last)
    grad = _vjp(channels_last, upstream, border, True, 2)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)


def test_hand_computed_gradient_of_one_sample_point():
    # One bin with one sample point at (y, x) = (1.25, 2.5) in a 1x1x3x4 map: the point's
    # bilinear weights are (1 - 0.25) * (1 - 0.5) etc. on pixels (1, 2), (1, 3), (2, 2), (2, 3).
    features = torch.zeros(1, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    # aligned=False, scale 1, one point per bin: the point is the centre of the 1 x 1 RoI.
    rois = torch.tensor([[0, 2.0, 0.75, 3.0, 1.75]], dtype=torch.float64)
    for border in ("clamp", "zero"):
        features.grad = None
        out = roi_align_pure(features, rois, (1, 1), 1.0, 1, False, border)
        (out * 7.0).sum().backward()
        expected = torch.zeros(1, 1, 3, 4, dtype=torch.float64)
        expected[0, 0, 1, 2] = 7.0 * 0.75 * 0.5
        expected[0, 0, 1, 3] = 7.0 * 0.75 * 0.5
        expected[0, 0, 2, 2] = 7.0 * 0.25 * 0.5
        expected[0, 0, 2, 3] = 7.0 * 0.25 * 0.5
        torch.testing.assert_close(features.grad, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("border", ["clamp", "zero"])
def test_bfloat16_features_near_the_far_border(border: str) -> None:
    """In bfloat16, 303 (the last column of a 304-wide map) rounds to 304: sample positions
    are computed in float32, so a RoI at the far edge pools the map's own last columns."""
    features = torch.randn(1, 8, 6, 304, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0.0, 1200.0, 2.0, 1216.0, 20.0], [0.0, 1210.0, 0.0, 1215.5, 23.0]])
    low = roi_align_pure(features.bfloat16(), rois, (2, 2), 0.25, 2, True, border)
    exact = roi_align_pure(features.bfloat16().float(), rois, (2, 2), 0.25, 2, True, border)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), exact, rtol=2e-2, atol=2e-2)
