"""RoIAlign in pure PyTorch (weighted sums through ``embedding_bag``), with a backward pass.

For every RoI the ``output_size`` bins are each sampled on a regular ``gh x gw`` grid of
points, each point is bilinearly interpolated from the feature map, and the points of a bin
are averaged. Two conventions for points near the border exist in the wild:

- ``border="clamp"`` (torchvision, detectron2): a point more than one pixel outside the map
  counts as 0; otherwise its coordinates are clamped into ``[0, size - 1]``.
- ``border="zero"`` (MegEngine): each of the 4 bilinear neighbours that lies outside the map
  counts as 0, and coordinates are never clamped.

``torchvision.ops.roi_align`` is used for ``border="clamp"`` on GPUs when it imports and
works. While exporting to ONNX the op is ONNX's ``RoiAlign`` (the clamp convention); the zero
border is the same op on the map padded with one pixel of zeros on every side.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from fasterrcnn.ops.backend import torchvision_op
from fasterrcnn.ops.shapes import as_size

Border = Literal["clamp", "zero"]


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
    if torch.onnx.is_in_onnx_export():
        return _onnx_roi_align(
            features, rois, (ph, pw), spatial_scale, sampling_ratio, aligned, border
        )
    # torchvision's CPU kernel is single-threaded: on 1000 RoIs of a 800x1216 image it took
    # 0.40 s where the pure version takes 0.10 s, so it is used on GPUs only.
    use_torchvision = border == "clamp" and features.device.type != "cpu"
    tv_roi_align = torchvision_op("roi_align") if use_torchvision else None
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
    """Pure-PyTorch :func:`roi_align`; same contract.

    Every output bin is a weighted sum of feature-map pixels (4 bilinear neighbours of each of
    its ``gh x gw`` sample points, divided by ``gh * gw``), computed as one
    ``embedding_bag`` over the map viewed as a ``(N * H * W, C)`` table of pixels. Weights of
    neighbours that do not count are 0, so each bag has the same size.
    """
    ph, pw = output_size
    num_rois = rois.shape[0]
    n, channels, height, width = features.shape
    out = features.new_zeros((num_rois, ph, pw, channels))
    if num_rois == 0 and not torch.jit.is_tracing():  # a traced graph serves any count
        return out.permute(0, 3, 1, 2)
    # A view when the map is channels-last, else one copy.
    table = features.permute(0, 2, 3, 1).reshape(n * height * width, channels)

    # Sample positions and bilinear weights in at least float32: in bfloat16 a position near
    # the far border of a wide map would round past it.
    rois = rois.to(torch.promote_types(features.dtype, torch.float32))
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
        grid_hw = torch.stack((torch.ceil(roi_h / ph), torch.ceil(roi_w / pw)), dim=1).long()

    image_offset = rois[:, 0].long() * (height * width)
    geometry = (start_y, bin_h, start_x, bin_w, image_offset)
    if sampling_ratio > 0 or torch.jit.is_tracing():
        # One pass; with adaptive grids (in a traced graph) each RoI samples the largest
        # grid of the batch and the points beyond its own weigh 0.
        grid_max: tuple[int, int] | Tensor = (sampling_ratio, sampling_ratio)
        if sampling_ratio <= 0:  # the largest grid (at least 1: embedding_bag needs points)
            grid_max = torch.cat([grid_hw, grid_hw.new_ones(1, 2)]).max(0)[0]
        bags = _bags(geometry, grid_hw, grid_max, (ph, pw), (height, width), border, table)
        return bags.permute(0, 3, 1, 2)
    # Adaptive grids: one pass per grid size, so that no point is wasted.
    for gh, gw in torch.unique(grid_hw, dim=0).tolist():
        if gh <= 0 or gw <= 0:
            continue  # no sample points: the bins stay 0
        index = torch.nonzero((grid_hw == grid_hw.new_tensor([gh, gw])).all(dim=1)).squeeze(1)
        part = tuple(t[index] for t in geometry)
        bags = _bags(part, grid_hw[index], (gh, gw), (ph, pw), (height, width), border, table)
        out = out.index_copy(0, index, bags)
    return out.permute(0, 3, 1, 2)


def _bags(
    geometry: tuple[Tensor, ...],
    grid_hw: Tensor,
    grid_max: tuple[int, int] | Tensor,
    bins: tuple[int, int],
    size: tuple[int, int],
    border: Border,
    table: Tensor,
) -> Tensor:
    """Tensor[K, ph, pw, C]: every bin's weighted sum of the pixels its points read.

    ``geometry``: ``start_y, bin_h, start_x, bin_w, image_offset`` Tensor[K] per RoI;
    ``grid_hw`` Tensor[K, 2] the points per bin of each RoI, at most ``grid_max``.
    """
    start_y, bin_h, start_x, bin_w, image_offset = geometry
    (ph, pw), (height, width) = bins, size
    rows, wy = _neighbours(start_y, bin_h, ph, grid_hw[:, 0], grid_max[0], height, border)
    cols, wx = _neighbours(start_x, bin_w, pw, grid_hw[:, 1], grid_max[1], width, border)
    k = start_y.shape[0]
    # (k, ph, gh, 2) x (k, pw, gw, 2) -> bags (k, ph, pw, gh * 2 * gw * 2).
    pixel = rows[:, :, None, :, :, None, None] * width + cols[:, None, :, None, None, :, :]
    pixel = pixel + image_offset[:, None, None, None, None, None, None]
    points = (grid_hw[:, 0] * grid_hw[:, 1]).to(wy.dtype).clamp(min=1)
    weight = wy[:, :, None, :, :, None, None] * wx[:, None, :, None, None, :, :]
    weight = weight / points[:, None, None, None, None, None, None]
    bags = F.embedding_bag(  # (k * ph * pw, points * 4): also when k == 0
        pixel.flatten(3).flatten(0, 2),
        table,
        mode="sum",
        per_sample_weights=weight.flatten(3).flatten(0, 2).to(table.dtype),
    )
    return bags.view(k, ph, pw, table.shape[1])


def _neighbours(
    start: Tensor,
    bin_size: Tensor,
    bins: int,
    grid: Tensor,
    grid_max: int | Tensor,
    size: int,
    border: Border,
) -> tuple[Tensor, Tensor]:
    """Along one axis: the two bilinear neighbours of every sample point and their weights.

    Sample ``g`` of bin ``b`` lies at ``start + b * bin + (g + 0.5) * bin / grid``, for
    ``g < grid`` (``grid`` Tensor[K], at most ``grid_max``). Returns ``index``
    Tensor[K, bins, grid_max, 2] int64 (low, high) within ``[0, size)`` and ``weight``
    Tensor[K, bins, grid_max, 2]; a neighbour that does not count has weight 0.
    """
    b = torch.arange(bins, dtype=start.dtype, device=start.device)
    g = torch.arange(as_size(grid_max), dtype=start.dtype, device=start.device) + 0.5
    grid = grid.to(start.dtype)[:, None, None]
    pos = (
        start[:, None, None]
        + b[None, :, None] * bin_size[:, None, None]
        + g[None, None, :] * bin_size[:, None, None] / grid.clamp(min=1)  # 0 points: no NaN
    )
    sampled = (g[None, None, :] < grid).to(pos.dtype)
    if border == "clamp":
        # torchvision: a point beyond (-1, size) is 0; otherwise clamp it into [0, size - 1].
        inside = ((pos >= -1.0) & (pos <= size)).to(pos.dtype)
        pos = pos.clamp(min=0.0)
        low = pos.floor().clamp(max=size - 1)
        pos = pos.clamp(max=size - 1).where(low >= size - 1, pos)
        frac = pos - low
        high = (low + 1).clamp(max=size - 1)
        inside = inside * sampled
        weight = torch.stack(((1 - frac) * inside, frac * inside), dim=-1)
    else:
        # MegEngine: each neighbour outside [0, size) is 0; nothing is clamped.
        low = pos.floor()
        frac = pos - low
        high = low + 1
        weight = torch.stack(
            (
                (1 - frac) * ((low >= 0) & (low < size)).to(pos.dtype) * sampled,
                frac * ((high >= 0) & (high < size)).to(pos.dtype) * sampled,
            ),
            dim=-1,
        )
    index = torch.stack((low, high), dim=-1).clamp(0, size - 1).long()
    return index, weight


class _OnnxRoIAlign(torch.autograd.Function):
    """ONNX ``RoiAlign`` (opset 16) with the clamp border; the pure op while tracing."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: object,
        features: Tensor,
        boxes: Tensor,
        batch_index: Tensor,
        output_size: tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool,
    ) -> Tensor:
        rois = torch.cat([batch_index[:, None].to(boxes.dtype), boxes], dim=1)
        return roi_align_pure(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    def symbolic(
        g, features, boxes, batch_index, output_size, spatial_scale, sampling_ratio, aligned
    ):  # type: ignore[no-untyped-def]
        return g.op(
            "RoiAlign",
            features,
            boxes,
            batch_index,
            coordinate_transformation_mode_s="half_pixel" if aligned else "output_half_pixel",
            mode_s="avg",
            output_height_i=output_size[0],
            output_width_i=output_size[1],
            sampling_ratio_i=sampling_ratio,
            spatial_scale_f=spatial_scale,
        )


def _onnx_roi_align(
    features: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    border: Border,
) -> Tensor:
    boxes = rois[:, 1:]
    if border == "zero":
        # A point's neighbour outside the map reads a zero pixel instead of the clamped one.
        features = F.pad(features, (1, 1, 1, 1))
        boxes = boxes + 1.0 / spatial_scale
    batch_index = rois[:, 0].to(torch.int64)
    return _OnnxRoIAlign.apply(
        features, boxes, batch_index, output_size, spatial_scale, sampling_ratio, aligned
    )
