"""Name-seeded weights: the recipes of the reference outputs in tests/fixtures (see their READMEs).

Each tensor's values depend only on its key and shape, so anyone can regenerate the weights
the reference implementations ran with.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1] / "fixtures"


def torch_seeded(
    shapes: dict[str, list[int]], stem_scale: dict[str, float] | None = None
) -> dict[str, torch.Tensor]:
    """torchvision / detectron2 recipe (torch CPU generator seeded with crc32(key))."""
    out = {}
    for key, shape in shapes.items():
        name = key.rsplit(".", 1)[-1]
        if name == "num_batches_tracked":
            out[key] = torch.zeros((), dtype=torch.int64)
            continue
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        if name == "weight" and len(shape) >= 2:
            value = torch.randn(shape, generator=g) * math.sqrt(1 / math.prod(shape[1:]))
        elif name == "bias":
            value = torch.randn(shape, generator=g) * 0.01
        elif name == "weight":
            value = 1 + 0.1 * torch.randn(shape, generator=g)
        elif name == "running_mean":
            value = 0.1 * torch.randn(shape, generator=g)
        elif name == "running_var":
            value = 1 + 0.1 * torch.rand(shape, generator=g)
        else:
            raise ValueError(key)
        if stem_scale and key in stem_scale:
            value = value * stem_scale[key]
        out[key] = value
    return out


def numpy_seeded(
    shapes: dict[str, list[int]], grouped_as_4d: bool = False
) -> dict[str, np.ndarray]:
    """MegEngine recipe (numpy PCG64 seeded with crc32(key), float64 then float32).

    ``grouped_as_4d``: draw 5-D grouped kernels (g, o, i, kh, kw) on the 4-D shape
    (g * o, i, kh, kw) and reshape (the ResNeXt adjustment of the variants README).
    """
    out = {}
    for key, shape in shapes.items():
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        name = key.rsplit(".", 1)[-1]
        draw_shape = list(shape)
        if grouped_as_4d and len(shape) == 5:
            draw_shape = [shape[0] * shape[1], *shape[2:]]
        n = math.prod(draw_shape)
        if name == "weight" and n != max(draw_shape):
            value = rng.standard_normal(draw_shape) * math.sqrt(1 / (n / draw_shape[0]))
        elif name == "bias":
            value = rng.standard_normal(draw_shape) * 0.01
        elif name == "weight":
            value = 1 + 0.1 * rng.standard_normal(draw_shape)
        elif name == "running_mean":
            value = 0.1 * rng.standard_normal(draw_shape)
        elif name == "running_var":
            value = 1 + 0.1 * rng.random(draw_shape)
        else:
            raise ValueError(key)
        out[key] = value.astype(np.float32).reshape(shape)
    return out


def load_shapes(path: Path) -> dict[str, list[int]]:
    """A ``key -> shape`` (or ``key -> {"shape": ...}``) JSON, in file order."""
    raw = json.loads(path.read_text())
    return {k: (v["shape"] if isinstance(v, dict) else v) for k, v in raw.items()}
