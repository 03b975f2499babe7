"""The printed report of the inference benchmark: the setup lines (versions, device, model,
weights, images, load average), the per-image table, the stage table, the fp32 matmul rates,
the table of the configurations each timed in its own process, the floor, and the load
warning and SUMMARY line at the end."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from typing import Any

import torch
from inference_configurations import label_precision
from inference_figures import load_average
from inference_peaks import Peaks
from inference_setup import Setup


def print_setup(setup: Setup) -> float:
    """Print the versions, device, model, weights and images; measure and print the load
    average, which is returned."""
    args, device, cfg = setup.args, setup.args.device, setup.model.config.input
    print(
        f"torch {torch.__version__}, {platform.machine()}, device {device}, "
        f"threads {torch.get_num_threads()}"
    )
    if device == "cuda":
        print(
            f"  {torch.cuda.get_device_name()}; TF32 matmul "
            f"{torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}"
            " (the matmul peak is fp32; TF32 convolutions can exceed it)"
        )
    print(
        f"model {args.model} at {cfg.short_side}/{cfg.max_side}, weights: {setup.weights_desc}; "
        f"our nms/roi_align kernels: {setup.kernels}"
    )
    print(f"torchvision: {setup.tv_desc}")
    print(
        f"images: {len(setup.images)} from {setup.folder}; warmup {args.warmup}, repeat {args.repeat}"
    )
    load_before = load_average()
    print(f"load average {load_before:.2f} on {os.cpu_count()} CPUs")
    return load_before


def print_image_table(records: list[dict[str, Any]], torchvision: bool) -> None:
    """The per-image table: shapes, RoIs, GFLOPs, times and detections."""
    print()
    head = (
        f"{'image':<17}{'orig HxW':>10}{'input HxW':>11}{'RoIs':>6}{'GFLOPs':>8}"
        f"{'predict s':>11}{'stages s':>10}"
    )
    if torchvision:
        head += f"{'tv s':>8}{'dets ours/tv':>14}"
    else:
        head += f"{'dets':>6}"
    print(head)
    for row in records:
        line = (
            f"{row['image']:<17}{'x'.join(map(str, row['original'])):>10}"
            f"{'x'.join(map(str, row['input_shape'])):>11}{row['rois']:>6}"
            f"{row['flops']['total'] / 1e9:>8.1f}{row['predict_s']:>11.3f}"
            f"{row['stages_total_s']:>10.3f}"
        )
        if torchvision:
            line += (
                f"{row['torchvision_s']:>8.3f}"
                f"{str(row['detections']) + '/' + str(row['torchvision_detections']):>14}"
            )
        else:
            line += f"{row['detections']:>6}"
        print(line)


def print_stage_table(
    records: list[dict[str, Any]],
    stage_rows: list[tuple[str, list[float], int]],
    summary: dict[str, Any],
    torchvision: bool,
) -> None:
    """The stage table: each stage's time, share, GFLOPs and rate, then the end-to-end rows."""
    n = len(records)
    total_flops = sum(r["flops"]["total"] for r in records)
    print()
    stages_total = summary["stages_total_s_per_image"]["mean"]
    print(f"{'per image':<22}{'mean s':>9}{'median s':>10}{'share':>8}{'GFLOPs':>9}{'GFLOP/s':>9}")
    for s, times, fl in stage_rows:
        mean = statistics.fmean(times)
        gf = fl / n / 1e9
        rate = f"{fl / sum(times) / 1e9:>9.1f}" if fl else f"{'-':>9}"
        print(
            f"{s:<22}{mean:>9.3f}{statistics.median(times):>10.3f}"
            f"{mean / stages_total:>8.1%}{gf:>9.1f}{rate}"
        )
    rows = [
        ("sum of stages", summary["stages_total_s_per_image"]),
        ("predict() end to end", summary["s_per_image"]),
    ]
    if torchvision:
        rows.append(("torchvision end to end", summary["torchvision_s_per_image"]))
    for label, st in rows:
        rate = total_flops / n / st["mean"] / 1e9
        print(
            f"{label:<22}{st['mean']:>9.3f}{st['median']:>10.3f}{'':>8}"
            f"{total_flops / n / 1e9:>9.1f}{rate:>9.1f}"
        )


def print_peaks(
    before: Peaks, after: Peaks, peak: float, flop_check: dict[str, int] | None, image: str
) -> None:
    """The fp32 matmul rates before and after, and the ``--check-flops`` comparison on
    ``image`` (the first)."""
    print()
    fmt = ", ".join(f"{k}: {v:.1f}" for k, v in before.matmul.items())
    fmt_after = ", ".join(f"{k}: {v:.1f}" for k, v in after.matmul.items())
    print(f"fp32 matmul GFLOP/s before [{fmt}] after [{fmt_after}] -> peak {peak:.1f}")
    if flop_check is not None:
        print(
            f"FLOP check on {image}: real forward "
            f"{flop_check['real_forward'] / 1e9:.3f} GFLOPs, meta count "
            f"{flop_check['meta_count'] / 1e9:.3f}"
        )


def print_configurations(
    args: argparse.Namespace, configurations: dict[str, dict[str, Any]], n: int
) -> None:
    """The configuration table: each configuration timed in its own process."""
    print()
    print(
        f"each configuration in its own process ({args.warmup} warm-up, {args.repeat} "
        f"timed run(s) per image, the same {n} image{'s' * (n != 1)}):"
    )
    print(
        f"{'configuration':<22}{'s/image':>9}{'median':>9}{'images/s':>10}{'/ torchvision':>15}"
        f"{'peak RSS MB':>13}"
    )
    for name, result in configurations.items():
        if "error" in result:
            print(f"{name:<22}failed: {result['error']}")
            continue
        times, ratio = result["times"], result["over_torchvision"]
        shown = f"{ratio:>15.3f}" if ratio is not None else f"{'-':>15}"
        print(
            f"{name:<22}{result['mean']:>9.3f}{result['median']:>9.3f}"
            f"{len(times) / sum(times):>10.2f}{shown}{result['peak_rss_mb']:>13.0f}"
        )


def print_floor(
    floors: dict[str, dict[str, Any]], configurations: dict[str, dict[str, Any]]
) -> None:
    """The floor: what no implementation of these FLOPs can beat on this machine, and,
    with torchvision, the measured configurations of the same precision next to it."""
    print()
    print("floor: every counted FLOP at the best measured kernel rate, everything else free")
    for precision, row in floors.items():
        rates = ", ".join(f"{k} {v:.1f}" for k, v in row["gflops_per_s"].items())
        line = f"  {precision}: {rates} GFLOP/s -> {row['s_per_image']:.3f} s/image"
        if "over_torchvision" in row:
            measured = [
                f"{label} {c['over_torchvision']:.3f}"
                for label, c in configurations.items()
                if label_precision(label) == precision
                and "torchvision" not in label
                and "error" not in c
            ]
            line += (
                f" = {row['over_torchvision']:.3f} x torchvision (measured: {', '.join(measured)})"
            )
        print(line)


def print_summary(
    args: argparse.Namespace,
    summary: dict[str, Any],
    loads: tuple[float, float],
    peak: float,
    torchvision: bool,
) -> None:
    """The load warning (when other processes share the CPUs) and the SUMMARY line."""
    load_before, load_after = loads
    busy = max(load_before, load_after) - args.threads
    if args.device == "cpu" and busy > 0.5:
        print(
            f"warning: load average {load_before:.2f} before / {load_after:.2f} after; other "
            f"processes share the CPUs, so the timings (and the matmul peak) are pessimistic"
        )
    line = (
        f"SUMMARY ours {summary['s_per_image']['mean']:.3f} s/image "
        f"(median {summary['s_per_image']['median']:.3f}) | "
        f"{summary['gflops_per_image']:.1f} GFLOPs/image | {summary['gflops_per_s']:.1f} GFLOP/s | "
        f"matmul peak {peak:.1f} GFLOP/s | {summary['fraction_of_peak']:.1%} of peak"
    )
    if torchvision:
        line += (
            f" | torchvision {summary['torchvision_s_per_image']['mean']:.3f} s/image | "
            f"ours/torchvision {summary['ours_over_torchvision']:.3f} "
            f"(per-image median {summary['ours_over_torchvision_median']:.3f})"
        )
    else:
        line += " | torchvision n/a"
    print(line)
