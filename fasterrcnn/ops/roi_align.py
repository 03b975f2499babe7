"""RoIAlign in pure PyTorch (bilinear sampling through ``grid_sample``), with a backward pass.

For every RoI the ``output_size`` bins are each sampled on a regular ``gh x gw`` grid of
points, each point is bilinearly interpolated from the feature map, and the points of a bin
are averaged. Two conventions for points near the border exist in the wild:

- ``border="clamp"`` (torchvision, detectron2): a point more than one pixel outside the map
  counts as 0; otherwise its coordinates are clamped into ``[0, size - 1]``.
- ``border="zero"`` (MegEngine): each of the 4 bilinear neighbours that lies outside the map
  counts as 0, and coordinates are never clamped.

``torchvision.ops.roi_align`` is used for ``border="clamp"`` when it imports and works.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Border = Literal["clamp", "zero"]

# RoIs sampled per grid_sample call: bounds the temporary (C, chunk * gh * ph, gw * pw) map.
_ROI_CHUNK = 256


@functools.lru_cache(maxsize=1)
def _torchvision_roi_align():
    try:
        from torchvision.ops import roi_align as tv_roi_align

        tv_roi_align(torch.zeros(1, 1, 2, 2), torch.zeros(1, 5), (1, 1), 1.0, 1, False)
    except Exception:
        return None
    return tv_roi_align


def roi_align(
    features: Tensor,
    rois: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    border: Border = "clamp",
) -> Tensor:
    """Pool each RoI of ``rois`` from ``features``.

    Args:
        features: Tensor[N, C, H, W].
        rois: Tensor[K, 5] rows ``(batch_index, x1, y1, x2, y2)`` in image pixels.
        output_size: ``(ph, pw)`` bins, or one int for both.
        spatial_scale: feature-map pixels per image pixel (1 / stride).
        sampling_ratio: points per bin along each axis; 0 = adaptive, ``ceil(roi_size / bins)``
            (an empty RoI then has no points and pools to 0).
        aligned: shift RoIs by -0.5 feature pixel (pixel centres at +0.5); when False the RoI
            size is at least 1 feature pixel.
        border: ``"clamp"`` or ``"zero"`` (see the module docstring).

    Returns:
        Tensor[K, C, ph, pw].
    """
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    if border == "clamp" and not torch.jit.is_scripting():
        tv_roi_align = _torchvision_roi_align()
        if tv_roi_align is not None:
            return tv_roi_align(features, rois, (ph, pw), spatial_scale, sampling_ratio, aligned)
    return roi_align_pure(features, rois, (ph, pw), spatial_scale, sampling_ratio, aligned, border)


def roi_align_pure(
    features: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    border: Border = "clamp",
) -> Tensor:
    """Pure-PyTorch :func:`roi_align`; same contract."""
    ph, pw = output_size
    num_rois = rois.shape[0]
    channels = features.shape[1]
    out = features.new_zeros((num_rois, channels, ph, pw))
    if num_rois == 0:
        return out

    rois = rois.to(features.dtype)
    offset = 0.5 if aligned else 0.0
    start_x = rois[:, 1] * spatial_scale - offset
    start_y = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - start_x
    roi_h = rois[:, 4] * spatial_scale - offset - start_y
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_w = roi_w / pw
    bin_h = roi_h / ph

    if sampling_ratio > 0:
        grid_hw = torch.full((num_rois, 2), sampling_ratio, dtype=torch.int64, device=rois.device)
    else:
        grid_hw = torch.stack((torch.ceil(roi_h / ph), torch.ceil(roi_w / pw)), dim=1)
        grid_hw = grid_hw.to(torch.int64)

    batch_index = rois[:, 0].to(torch.int64)
    # One sampling layout (image, points per bin) at a time; a fixed ratio gives one per image.
    layout = torch.stack((batch_index, grid_hw[:, 0], grid_hw[:, 1]), dim=1)
    for image, gh, gw in torch.unique(layout, dim=0).tolist():
        if gh <= 0 or gw <= 0:
            continue  # no sample points: the bins stay 0
        index = torch.nonzero((layout == layout.new_tensor([image, gh, gw])).all(dim=1)).squeeze(1)
        for chunk in index.split(_ROI_CHUNK):
            ys = _sample_coords(start_y[chunk], bin_h[chunk], ph, gh)  # (k, ph*gh)
            xs = _sample_coords(start_x[chunk], bin_w[chunk], pw, gw)  # (k, pw*gw)
            samples = _bilinear(features[image], ys, xs, border)  # (k, C, ph*gh, pw*gw)
            k = chunk.numel()
            pooled = samples.reshape(k, channels, ph, gh, pw, gw).sum(dim=(3, 5)) / (gh * gw)
            out = out.index_copy(0, chunk, pooled)
    return out


def _sample_coords(start: Tensor, bin_size: Tensor, bins: int, grid: int) -> Tensor:
    """Sample positions ``start + b * bin + (g + 0.5) * bin / grid`` as Tensor[K, bins * grid]."""
    b = torch.arange(bins, dtype=start.dtype, device=start.device)
    g = torch.arange(grid, dtype=start.dtype, device=start.device) + 0.5
    pos = (
        start[:, None, None]
        + b[None, :, None] * bin_size[:, None, None]
        + g[None, None, :] * bin_size[:, None, None] / grid
    )
    return pos.reshape(start.shape[0], bins * grid)


def _bilinear(feature: Tensor, ys: Tensor, xs: Tensor, border: Border) -> Tensor:
    """Bilinear samples of ``feature`` (Tensor[C, H, W]) on each RoI's grid ``ys x xs``.

    ``ys``: Tensor[K, Sy], ``xs``: Tensor[K, Sx] in feature pixels (centre of pixel i at i).
    Returns Tensor[K, C, Sy, Sx].
    """
    channels, height, width = feature.shape
    k, sy = ys.shape
    sx = xs.shape[1]
    valid = None
    if border == "clamp":
        valid_y = (ys >= -1.0) & (ys <= height)
        valid_x = (xs >= -1.0) & (xs <= width)
        valid = valid_y[:, :, None] & valid_x[:, None, :]
        ys = ys.clamp(0, height - 1)
        xs = xs.clamp(0, width - 1)
    # grid_sample with align_corners=False puts pixel i's centre at (2i + 1) / size - 1.
    gy = (2.0 * ys + 1.0) / height - 1.0
    gx = (2.0 * xs + 1.0) / width - 1.0
    grid = torch.stack(
        (gx[:, None, :].expand(k, sy, sx), gy[:, :, None].expand(k, sy, sx)), dim=-1
    ).reshape(1, k * sy, sx, 2)
    sampled = F.grid_sample(
        feature[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (1, C, k*sy, sx)
    sampled = sampled.reshape(channels, k, sy, sx).transpose(0, 1)
    if valid is not None:
        sampled = sampled * valid[:, None].to(sampled.dtype)
    return sampled
