"""Anchor boxes for one pyramid level.

Naming: a *cell* anchor is an anchor of the grid cell at the origin; the anchors of a level
are the cell anchors shifted to every cell, ordered row-major over (y, x) and then by cell
anchor, i.e. shape ``(H * W * A, 4)``.

Three shape rules are in use:

- ``"exact"``: ``w = sqrt(size**2 / r)``, ``h = r * w`` (``r = h / w``), centred on the cell
  centre, not rounded (detectron2, MegEngine 1.x).
- ``"rounded"``: the same corners, each rounded to an integer (torchvision).
- ``"legacy_plus_one"``: Detectron-1 / MegEngine 0.x. The ratio is applied to a
  ``base x base`` box with "+1" widths and rounded, then scaled by ``size / base``; the corners
  are ``centre -/+ (w - 1) / 2`` around the base box centre ``(base - 1) / 2``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

ShapeRule = Literal["exact", "rounded", "legacy_plus_one"]


def cell_anchors(
    sizes: tuple[float, ...],
    ratios: tuple[float, ...],
    shape_rule: ShapeRule,
    legacy_base_size: int = 16,
) -> Tensor:
    """Cell anchors (Tensor[A, 4], A = len(ratios) * len(sizes)), ratio-major, float32.

    For ``"exact"`` and ``"rounded"`` the cell anchors are centred on 0; for
    ``"legacy_plus_one"`` on ``(legacy_base_size - 1) / 2``.
    """
    rows = []
    for ratio in ratios:
        for size in sizes:
            if shape_rule == "legacy_plus_one":
                base = float(legacy_base_size)
                w = _round_half_away(math.sqrt(base * base / ratio))
                h = _round_half_away(w * ratio)
                w, h = w * size / base, h * size / base
                ctr = (base - 1) / 2
                rows.append(
                    (
                        ctr - 0.5 * (w - 1),
                        ctr - 0.5 * (h - 1),
                        ctr + 0.5 * (w - 1),
                        ctr + 0.5 * (h - 1),
                    )
                )
            else:
                w = math.sqrt(size * size / ratio)
                h = ratio * w
                rows.append((-w / 2, -h / 2, w / 2, h / 2))
    anchors = torch.tensor(rows, dtype=torch.float64)
    if shape_rule == "rounded":
        anchors = _torchvision_rounded(sizes, ratios)
    return anchors.to(torch.float32)


def _round_half_away(x: float) -> float:
    return float(np.sign(x) * np.floor(abs(x) + 0.5))


def _torchvision_rounded(sizes: tuple[float, ...], ratios: tuple[float, ...]) -> Tensor:
    """torchvision's float32 recipe: ``h_ratio = sqrt(r)``, ``w = size / h_ratio``, rounded."""
    scales = torch.tensor(sizes, dtype=torch.float32)
    aspect = torch.tensor(ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(aspect)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


def grid_anchors(
    cells: Tensor,
    grid_size: tuple[int, int],
    stride: tuple[float, float],
    offset: tuple[float, float],
) -> Tensor:
    """Shift ``cells`` (Tensor[A, 4]) to every cell of an ``(H, W)`` grid.

    The shift of cell ``(i, j)`` is ``(j * stride_x + offset_x, i * stride_y + offset_y)``.
    Returns Tensor[H * W * A, 4] in (y, x, anchor) order.
    """
    height, width = grid_size
    stride_y, stride_x = stride
    offset_y, offset_x = offset
    device = cells.device
    shift_x = torch.arange(width, dtype=torch.float32, device=device) * stride_x + offset_x
    shift_y = torch.arange(height, dtype=torch.float32, device=device) * stride_y + offset_y
    sy, sx = torch.meshgrid(shift_y, shift_x, indexing="ij")
    shifts = torch.stack((sx, sy, sx, sy), dim=-1).reshape(-1, 1, 4)
    return (shifts + cells[None]).reshape(-1, 4)
