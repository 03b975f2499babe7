"""The FLOP count of the inference benchmark: :class:`FlopModel` counts the FLOPs (2 x
multiply-adds) of the convolutions and linear layers of each stage with
``torch.utils.flop_counter.FlopCounterMode`` on a ``meta`` copy of the model, fed each image's
input shape and RoI count, so counting costs no compute; with ``--check-flops``, the count of
a real forward of the first image checks it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from inference_setup import Setup
from torch.utils.flop_counter import FlopCounterMode

import fasterrcnn


class FlopModel:
    """FLOPs of the convolutions and linears of ``model`` per stage, from its input shape and
    RoI count, on a ``meta`` copy (no compute). The data-dependent parts (proposal selection,
    RoIAlign, NMS) have no convolutions or linears."""

    def __init__(self, model: fasterrcnn.Detector) -> None:
        with torch.device("meta"):
            self.meta = type(model)(model.config)
        self.channels = model.config.fpn.out_channels
        self.pool = model.config.pooler.output_size
        self._cache: dict[tuple[int, int], tuple[int, int]] = {}

    @staticmethod
    def _count(fn: Callable[[], Any]) -> tuple[int, Any]:
        with FlopCounterMode(display=False) as counter:
            out = fn()
        return counter.get_total_flops(), out

    def __call__(self, input_shape: Sequence[int], rois: int) -> dict[str, int]:
        key = (int(input_shape[0]), int(input_shape[1]))
        if key not in self._cache:
            x = torch.empty((1, 3, *key), device="meta")
            backbone, features = self._count(lambda: self.meta.backbone(x))
            rpn, _ = self._count(lambda: self.meta.rpn.head(features))
            self._cache[key] = (backbone, rpn)
        backbone, rpn = self._cache[key]
        pooled = torch.empty((rois, self.channels, self.pool, self.pool), device="meta")
        heads, _ = self._count(
            lambda: self.meta.roi_heads.predictor(self.meta.roi_heads.box_head(pooled))
        )
        return {"backbone+FPN": backbone, "RPN": rpn, "RoI heads": heads}


def real_forward_flops(model: fasterrcnn.Detector, image: np.ndarray) -> tuple[int, int, list[int]]:
    """(FLOPs of a real forward, its RoI count, its input shape): checks :class:`FlopModel`."""
    with torch.inference_mode():
        batch = model.preprocess([image])
        with FlopCounterMode(display=False) as counter:
            raw = model(batch.tensor, batch.image_sizes)
    return counter.get_total_flops(), int(raw.rois.shape[0]), list(batch.tensor.shape[-2:])


def check_flop_count(setup: Setup, flop_model: FlopModel) -> dict[str, int] | None:
    """With ``--check-flops``: the FLOPs of a real forward of the first image and
    :class:`FlopModel`'s count for the same input shape and RoIs; else None."""
    if not setup.args.check_flops:
        return None
    real, rois, shape = real_forward_flops(setup.model, setup.images[0])
    counted = flop_model(shape, rois)
    return {"real_forward": real, "meta_count": sum(counted.values())}
