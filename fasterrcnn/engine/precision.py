"""Whether this machine can run a precision: bfloat16 needs native support to be worth it."""

from __future__ import annotations

import torch

from fasterrcnn.modeling.faster_rcnn import Precision


class PrecisionError(ValueError):
    """A precision this device cannot run; the message is one line."""


def check_precision(precision: str, device: torch.device | str) -> Precision:
    """``precision`` if ``device`` runs it natively, else :class:`PrecisionError`.

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
