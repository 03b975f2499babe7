"""Inference benchmark: seconds per image, where the time goes, FLOPs and fraction of peak.

Run from the repository root::

    .venv/bin/python benchmarks/inference.py                      # 10 COCO val images
    .venv/bin/python benchmarks/inference.py --num-images 5 --json out.json

For every image (decoded once, before any timing) it measures

* ``predict``: ``model.predict(rgb_array)`` end to end (preprocess, network, post-processing);
* the same work split into stages with the model's pieces under ``torch.inference_mode``:
  preprocess, backbone+FPN, RPN, RoI heads, postprocess;
* torchvision's ``fasterrcnn_resnet50_fpn`` with the same weights on the same image, when
  torchvision imports (from the uint8 array: to float /255, then the model);

the three runs interleaved, their order rotating from image to image. FLOPs (2 x multiply-adds
of the convolutions and linear layers, counted by ``torch.utils.flop_counter.FlopCounterMode``)
come from a copy of the model on the ``meta`` device fed each image's input shape and RoI
count, so counting costs no compute. The fp32 matmul peak is timed in the same process with
the same thread count, before and after the model runs.

Then the configuration table: ours in each precision, each exported runtime and torchvision,
each timed over the same images in a fresh process of its own (runtimes sharing a process
slow each other down), with the process's peak resident memory; and the floor: the time the
counted FLOPs would take at the best measured convolution and matmul rates, in fp32 and, when
a bf16 configuration is timed, in bf16.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from inference_configurations import (
    BACKENDS,
    child_main,
    compare_to_torchvision,
    export_backends,
    time_configurations,
)
from inference_figures import (
    load_average,
    result_json,
    stage_figures,
    summarize_images,
    write_json,
)
from inference_flops import FlopModel, check_flop_count
from inference_peaks import floor_figures, kernel_backend, make_clock, measure_peaks
from inference_setup import (
    DEFAULT_IMAGES,
    FALLBACK_IMAGES,
    Setup,
    build_torchvision,
    find_images,
    load_weights,
    torchvision_state,
)
from inference_tables import (
    print_configurations,
    print_floor,
    print_image_table,
    print_peaks,
    print_setup,
    print_stage_table,
    print_summary,
)
from inference_timing import time_images, warm_up

import fasterrcnn


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--images",
        type=Path,
        default=None,
        help=f"folder of images (default {DEFAULT_IMAGES}, else {FALLBACK_IMAGES})",
    )
    p.add_argument("--num-images", type=int, default=10, help="images to time (default 10)")
    p.add_argument("--model", default="torchvision_fasterrcnn_resnet50_fpn", help="preset name")
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="checkpoint file (default: the name-seeded weights of tests/helpers/seeded.py)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed runs of each kind on the first image (default 1)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="timed runs of each kind per image; the median is kept (default 1)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--matmul-sizes",
        default=None,
        help="square fp32 matmul sizes for the peak, comma-separated "
        "(default 1024,2048,3072 on cpu, 4096,8192 on cuda)",
    )
    p.add_argument(
        "--precisions",
        default="fp32",
        help="our precisions to time, comma-separated (default fp32; bf16 adds a model "
        "with create_model(precision='bf16'))",
    )
    p.add_argument(
        "--backends",
        default="",
        help="exported runtimes to time, comma-separated, from onnxruntime, openvino, "
        "openvino-bf16, torchscript, onnxruntime-int8, openvino-int8 (the model is exported "
        "once, untimed; int8 adds the int8 floor)",
    )
    p.add_argument(
        "--calibration-size", type=int, default=10,
        help="int8: calibrate on this many of the images (default 10)",
    )  # fmt: skip
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # a configuration's process
    p.add_argument("--export-dir", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-torchvision", action="store_true", help="skip the torchvision run")
    p.add_argument(
        "--check-flops",
        action="store_true",
        help="also count FLOPs on a real forward of the first image and compare",
    )
    p.add_argument("--json", type=Path, default=None, help="save all figures to this file")
    args = p.parse_args(argv)
    if args.num_images < 1 or args.repeat < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--num-images, --repeat and --threads must be >= 1, --warmup >= 0")
    unknown = [b for b in args.backends.split(",") if b and b not in BACKENDS]
    if unknown:
        p.error(f"--backends: unknown {unknown[0]!r} (one of {', '.join(BACKENDS)})")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False")
    return args


def set_up(args: argparse.Namespace) -> Setup:
    """Resolve the images and weights, build our model, export it for the exported
    runtimes and build torchvision's model."""
    torch.set_num_threads(args.threads)
    clock = make_clock(args.device)
    folder, paths = find_images(args.images, args.num_images)
    images = [fasterrcnn.read_image(p) for p in paths]  # decoding is not timed
    weights, weights_desc = load_weights(args, fasterrcnn.get_preset(args.model).family)
    model = fasterrcnn.create_model(args.model, weights=weights, device=args.device)
    export_dir = export_backends(model, args.backends, folder, args.calibration_size)
    tv_model, tv_desc = (None, "skipped (--no-torchvision)")
    if not args.no_torchvision:
        tv_model, tv_desc = build_torchvision(torchvision_state(weights), args.device)
    kernels = kernel_backend()
    default_sizes = "4096,8192" if args.device == "cuda" else "1024,2048,3072"
    sizes = [int(s) for s in (args.matmul_sizes or default_sizes).split(",")]
    return Setup(
        args=args,
        clock=clock,
        folder=folder,
        paths=paths,
        images=images,
        weights=weights,
        weights_desc=weights_desc,
        model=model,
        export_dir=export_dir,
        tv_model=tv_model,
        tv_desc=tv_desc,
        kernels=kernels,
        matmul_sizes=sizes,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.child is not None:
        child_main(args)
        return {}
    setup = set_up(args)
    load_before = print_setup(setup)
    before = measure_peaks(setup)
    warm_up(setup)
    flop_model = FlopModel(setup.model)
    records = time_images(setup, flop_model)
    after = measure_peaks(setup)
    loads = (load_before, load_average())
    peak = max(*before.matmul.values(), *after.matmul.values())
    flop_check = check_flop_count(setup, flop_model)

    torchvision = setup.tv_model is not None
    stage_rows = stage_figures(records)
    summary = summarize_images(records, peak, torchvision)
    print_image_table(records, torchvision)
    print_stage_table(records, stage_rows, summary, torchvision)
    print_peaks(before, after, peak, flop_check, records[0]["image"])

    try:
        configurations = time_configurations(setup)
    finally:
        shutil.rmtree(setup.export_dir, ignore_errors=True)
    summary["configurations"] = configurations
    tv_own = configurations.get("torchvision fp32", {}).get("times")
    compare_to_torchvision(configurations, tv_own)
    print_configurations(args, configurations, len(records))
    summary["floor"] = floor_figures([before, after], summary, tv_own)
    print_floor(summary["floor"], configurations)
    print_summary(args, summary, loads, peak, torchvision)

    result = result_json(
        setup, loads=loads, peaks=(before, after), peak=peak, stage_rows=stage_rows,
        records=records, summary=summary, flop_check=flop_check,
    )  # fmt: skip
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
