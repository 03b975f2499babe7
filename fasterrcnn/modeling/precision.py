"""The precisions the network computes in, and whether a device runs one natively.

- ``fp32``: float32 throughout.
- ``bf16``: convolutions and linear layers in bfloat16 under autocast, for inference
  (:meth:`~fasterrcnn.modeling.faster_rcnn.FasterRCNN.set_precision`) and training; worth it
  only where the device has native bfloat16 (:func:`check_precision`).
- ``fp16``: float16 autocast with loss scaling, for training on CUDA devices.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["fp32", "bf16", "fp16"]
INFERENCE_PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")
_AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


class PrecisionError(ValueError):
    """A precision this device cannot run; the message is one line."""


def autocast_dtype(precision: Precision) -> torch.dtype | None:
    """The dtype autocast runs ``precision``'s convolutions and linear layers in (None: no
    autocast, float32)."""
    try:
        return _AUTOCAST_DTYPES[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; choose fp32, bf16 or fp16") from None


def autocast_for(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """Autocast to ``precision``'s dtype on ``device`` (nothing for fp32)."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def check_precision(precision: str, device: torch.device | str) -> Precision:
    """``precision`` if ``device`` runs it natively for inference, else
    :class:`PrecisionError`.

    bf16 on a CPU needs AVX-512 BF16 or AMX (without them PyTorch emulates bfloat16, slower
    than float32); on CUDA, a GPU that supports it (Ampere or newer).
    """
    if precision == "fp32":
        return "fp32"
    if precision != "bf16":
        raise PrecisionError(f"unknown precision {precision!r}; choose fp32 or bf16")
    kind = torch.device(device).type
    if kind == "cpu" and not (
        torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    ):
        raise PrecisionError(
            "bf16 needs a CPU with AVX-512 BF16 or AMX; this one has neither (use fp32)"
        )
    if kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError("bf16 needs a GPU that supports bfloat16 (use fp32)")
    return "bf16"
