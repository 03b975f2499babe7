"""Kernel peaks and the floor of the inference benchmark: the clock, which nms / roi_align
kernels fasterrcnn picked, the fp32 matmul peak and the 3x3 convolution and matmul rates in
each precision timed before and after the model runs (:class:`Peaks`), and the floor: the time
the counted FLOPs would take at the best of those rates, everything else free."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from inference_setup import Setup
from int8_kernels import int8_conv_peak
from torch import Tensor

from fasterrcnn.modeling.precision import PrecisionError, check_precision


def make_clock(device: str) -> Callable[[], float]:
    if device == "cuda":

        def clock() -> float:
            torch.cuda.synchronize()
            return time.perf_counter()

        return clock
    return time.perf_counter


def best_seconds(kernel: Callable[[], Any], clock: Callable[[], float], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``kernel``, after one untimed call."""
    kernel()
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        kernel()
        best = min(best, clock() - t0)
    return best


def kernel_backend() -> str:
    """Which nms / roi_align kernels fasterrcnn picked (torchvision's when they import)."""
    try:
        from fasterrcnn.ops.backend import torchvision_op
    except ImportError:
        return "unknown"
    if torchvision_op("nms") and torchvision_op("roi_align"):
        return "torchvision.ops"
    return "pure PyTorch"


def matmul_peak(
    sizes: list[int], device: str, dtype: torch.dtype = torch.float32, repeats: int = 5
) -> dict[int, float]:
    """Best-of-``repeats`` GFLOP/s at each square size: ``torch.mm``, and on CPUs also
    oneDNN's matmul (the library behind PyTorch's CPU convolutions), whichever is faster.
    (``torch.mm`` calls MKL, which on AMD CPUs runs at about half of oneDNN's speed.)"""
    clock = make_clock(device)
    out = {}
    for n in sizes:
        gen = torch.Generator().manual_seed(n)
        a = torch.randn(n, n, generator=gen).to(device, dtype)
        b = torch.randn(n, n, generator=gen).to(device, dtype)
        kernels: list[Callable[[Tensor, Tensor], Any]] = [lambda x, y: torch.mm(x, y)]
        if device == "cpu" and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
            # oneDNN's inner product: x @ y.T, y being the weight; y is square and random,
            # so the cost is that of x @ y
            kernels.append(
                lambda x, y: torch.ops.mkldnn._linear_pointwise(x, y, None, "none", [], "")
            )
        best = min(best_seconds(partial(kernel, a, b), clock, repeats) for kernel in kernels)
        out[n] = 2 * n**3 / best / 1e9
        del a, b
    return out


def conv_peak(device: str, dtype: torch.dtype, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s in ``dtype`` of the model's dominant kernel: a 3x3
    convolution of 256 channels, channels-last as the model runs it."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, 100, 136, generator=gen).to(device, dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, generator=gen).to(device, dtype)
    w = w.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        best = best_seconds(
            lambda: torch.nn.functional.conv2d(x, w, padding=1), make_clock(device), repeats
        )
    return 2 * 256 * 256 * 9 * 100 * 136 / best / 1e9


def floor_rates(args: argparse.Namespace, fp32_matmul: float) -> dict[str, dict[str, float]]:
    """GFLOP/s of the 3x3 convolution and of the matmul (``fp32_matmul``, measured already
    by :func:`matmul_peak`, in fp32; a 2048 matmul in bf16): in fp32, and in bf16 when a
    bf16 configuration is timed and the device runs bf16. No layer of the model is expected
    to beat them on this machine."""
    rates = {"fp32": {"conv3x3": conv_peak(args.device, torch.float32), "matmul": fp32_matmul}}
    if "bf16" in args.precisions.split(",") or "openvino-bf16" in args.backends:
        try:
            check_precision("bf16", args.device)
        except PrecisionError:
            return rates
        rates["bf16"] = {
            "conv3x3": conv_peak(args.device, torch.bfloat16),
            "matmul": matmul_peak([2048], args.device, torch.bfloat16)[2048],
        }
    if "int8" in args.backends:
        rates["int8"] = {"conv3x3": int8_conv_peak(args.threads)}
    return rates


def floor_rows(
    rates: list[dict[str, dict[str, float]]], flops_per_image: float
) -> dict[str, dict[str, Any]]:
    """The fastest the model could run in each precision on this machine: every counted
    FLOP (convolutions and linear layers) at the best rate measured (``rates``: before and
    after the model runs), everything else free."""
    rows = {}
    for precision, kernels in rates[0].items():
        best = {k: max(r[precision][k] for r in rates) for k in kernels}
        top = max(best.values())
        rows[precision] = {"gflops_per_s": best, "s_per_image": flops_per_image / top / 1e9}
    return rows


@dataclass
class Peaks:
    """Kernel rates measured at one point of the run: before or after the model runs."""

    matmul: dict[int, float]  # fp32 GFLOP/s at each square size (matmul_peak)
    rates: dict[str, dict[str, float]]  # the floor's rates (floor_rates)


def measure_peaks(setup: Setup) -> Peaks:
    """Time the fp32 matmul peak, then the floor's convolution and matmul rates."""
    matmul = matmul_peak(setup.matmul_sizes, setup.args.device)
    return Peaks(matmul, floor_rates(setup.args, max(matmul.values())))


def floor_figures(
    peaks: list[Peaks], summary: dict[str, Any], tv_own: list[float] | None
) -> dict[str, dict[str, Any]]:
    """The floor rows (:func:`floor_rows`) at the rates of ``peaks`` (before and after),
    with their time over torchvision's in its own process (``tv_own``) when it ran."""
    floors = floor_rows([p.rates for p in peaks], summary["gflops_per_image"] * 1e9)
    tv_mean = statistics.fmean(tv_own) if tv_own else None
    if tv_mean is not None:
        for row in floors.values():
            row["over_torchvision"] = row["s_per_image"] / tv_mean
    return floors
