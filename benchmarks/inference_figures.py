"""The figures of the inference benchmark: the load average, the mean and median of a list of
times, each stage's times and FLOPs, the in-process summary over all images (rate, fraction of
the matmul peak, ours over torchvision), and all the figures as the JSON that
``inference.main`` returns and ``--json`` writes."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

import torch
from inference_peaks import Peaks
from inference_setup import Setup
from inference_timing import STAGES


def load_average() -> float:
    """1-minute load average (nan where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def summarize(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "median": statistics.median(values)}


def stage_figures(records: list[dict[str, Any]]) -> list[tuple[str, list[float], int]]:
    """(stage, its time on each image, its FLOPs summed over the images) for each stage."""
    stage_rows = []
    for s in STAGES:
        times = [r["stages_s"][s] for r in records]
        fl = sum(r["flops"].get(s, 0) for r in records)
        stage_rows.append((s, times, fl))
    return stage_rows


def summarize_images(
    records: list[dict[str, Any]], peak: float, torchvision: bool
) -> dict[str, Any]:
    """The in-process figures over all images: times, FLOPs, rate, fraction of the matmul
    peak and, with torchvision, ours over torchvision."""
    pred = [r["predict_s"] for r in records]
    total_flops = sum(r["flops"]["total"] for r in records)
    achieved = total_flops / sum(pred) / 1e9
    summary: dict[str, Any] = {
        "s_per_image": summarize(pred),
        "stages_total_s_per_image": summarize([r["stages_total_s"] for r in records]),
        "gflops_per_image": total_flops / len(records) / 1e9,
        "gflops_per_s": achieved,
        "matmul_peak_gflops_per_s": peak,
        "fraction_of_peak": achieved / peak,
    }
    if torchvision:
        tv = [r["torchvision_s"] for r in records]
        summary["torchvision_s_per_image"] = summarize(tv)
        summary["ours_over_torchvision"] = sum(pred) / sum(tv)
        # Paired per image (the runs alternate), so less sensitive to a noisy stretch.
        summary["ours_over_torchvision_median"] = statistics.median(
            p / t for p, t in zip(pred, tv, strict=True)
        )
        summary["torchvision_gflops_per_s"] = total_flops / sum(tv) / 1e9
    return summary


def result_json(
    setup: Setup,
    *,
    loads: tuple[float, float],
    peaks: tuple[Peaks, Peaks],
    peak: float,
    stage_rows: list[tuple[str, list[float], int]],
    records: list[dict[str, Any]],
    summary: dict[str, Any],
    flop_check: dict[str, int] | None,
) -> dict[str, Any]:
    """All the figures, as :func:`main` returns them and ``--json`` writes them."""
    args, cfg, n = setup.args, setup.model.config.input, len(records)
    result = {
        "config": {
            "model": args.model,
            "weights": setup.weights_desc,
            "short_side": cfg.short_side,
            "max_side": cfg.max_side,
            "images": str(setup.folder),
            "num_images": n,
            "threads": torch.get_num_threads(),
            "warmup": args.warmup,
            "repeat": args.repeat,
            "device": args.device,
            "kernels": setup.kernels,
            "torch": torch.__version__,
            "torchvision": setup.tv_desc,
            "load_average": {"before": loads[0], "after": loads[1]},
        },
        "matmul_gflops_per_s": {"before": peaks[0].matmul, "after": peaks[1].matmul, "peak": peak},
        "stages": {
            s: {**summarize(times), "gflops_per_image": fl / n / 1e9} for s, times, fl in stage_rows
        },
        "images": records,
        "summary": summary,
    }
    if flop_check is not None:
        result["flop_check"] = flop_check
    return result


def write_json(path: Path | None, result: dict[str, Any]) -> None:
    """With ``--json``: write ``result`` to ``path``."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
