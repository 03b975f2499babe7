"""The configurations of the inference benchmark's table, each timed in a fresh process of
its own: our model in each precision, each exported runtime (exported once, untimed, by the
main process) and torchvision. For each, the main process runs the benchmark's script
(``SCRIPT``) again with ``--child LABEL`` (:func:`time_in_own_process`); :func:`child_main`
is that process, which builds only its configuration, times it over the same images and
prints its figures as one JSON line."""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from inference_figures import summarize
from inference_peaks import make_clock
from inference_setup import Setup, build_torchvision, find_images, load_weights, torchvision_state
from inference_timing import run_predict, run_torchvision

import fasterrcnn
from fasterrcnn.export import export_model
from fasterrcnn.export.quantize import calibration_images, export_int8
from fasterrcnn.export.runtimes import ExportedModel
from fasterrcnn.inference.memory import prepare_allocator

SCRIPT = Path(__file__).with_name("inference.py")  # the entry point each child process runs

BACKENDS = (
    "onnxruntime", "openvino", "openvino-bf16", "torchscript", "onnxruntime-int8", "openvino-int8",
)  # fmt: skip


def configuration_labels(args: argparse.Namespace, torchvision: bool) -> list[str]:
    """The configurations of the table: our precisions, the exported runtimes, torchvision."""
    precisions = ["fp32"] + [p for p in args.precisions.split(",") if p and p != "fp32"]
    backends = [b for b in args.backends.split(",") if b]
    return precisions + backends + (["torchvision"] if torchvision else [])


def export_path(folder: Path, label: str) -> Path:
    if label.endswith("-int8"):
        return folder / "model-int8.onnx"
    return folder / ("model.pt" if label == "torchscript" else "model.onnx")


def label_precision(label: str) -> str:
    """The precision of a configuration's label: int8, bf16 or fp32."""
    return next((p for p in ("int8", "bf16") if p in label), "fp32")


def export_backends(
    model: fasterrcnn.Detector, backends: str, folder: Path, calibration_size: int
) -> Path:
    """Export ``model`` once (untimed) for each runtime of ``--backends`` into a new
    temporary folder, where each configuration's process loads it; the int8 file is
    calibrated on ``calibration_size`` images of ``folder`` (the timing does not depend on
    which images: the accuracy benchmark calibrates on others)."""
    export_dir = Path(tempfile.mkdtemp(prefix="fasterrcnn-bench-"))
    for backend in [b for b in backends.split(",") if b]:
        path = export_path(export_dir, backend)
        if path.exists():
            continue
        if backend.endswith("-int8"):
            export_int8(model, path, calibration_images(folder, calibration_size))
        else:
            export_model(model, path, "torchscript" if backend == "torchscript" else "onnx")
    return export_dir


def time_in_own_process(
    args: argparse.Namespace, label: str, folder: Path, export_dir: Path
) -> dict[str, Any]:
    """Time ``label`` over the images in a fresh process that builds only that
    configuration: runtimes sharing a process slow each other down (their thread pools
    spin for the CPUs, their allocators fragment one heap). The child's figures, or
    ``{"error": ...}`` with its last line of output."""
    command = [
        sys.executable, str(SCRIPT), "--child", label, "--model", args.model,
        "--images", str(folder), "--num-images", str(args.num_images),
        "--threads", str(args.threads), "--warmup", str(args.warmup),
        "--repeat", str(args.repeat), "--device", args.device,
        "--export-dir", str(export_dir),
    ]  # fmt: skip
    if args.weights is not None:
        command += ["--weights", str(args.weights)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode != 0:
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_main(args: argparse.Namespace) -> None:
    """The process of :func:`time_in_own_process`: builds one configuration, warms it up on
    the first image, times every image ``--repeat`` times and prints one JSON line: each
    image's median seconds and detection count, and the process's peak resident memory.
    Every configuration runs under the allocator settings ours sets (torchvision's run in
    the main process shares them too), so the table compares the runtimes, not malloc's."""
    prepare_allocator()
    torch.set_num_threads(args.threads)
    clock = make_clock(args.device)
    _, paths = find_images(args.images, args.num_images)
    images = [fasterrcnn.read_image(p) for p in paths]
    weights, _ = load_weights(args, fasterrcnn.get_preset(args.model).family)
    label = args.child
    run: Callable[[np.ndarray], tuple[float, int]]
    if label == "torchvision":
        tv_model, reason = build_torchvision(torchvision_state(weights), args.device)
        if tv_model is None:
            sys.exit(reason)
        run = partial(run_torchvision, tv_model, device=args.device, clock=clock)
    elif label in BACKENDS:
        runtime, _, precision = label.partition("-")
        path = export_path(args.export_dir, label)
        # an int8 file's other layers run in float32
        precision = "bf16" if precision == "bf16" else "fp32"
        exported = ExportedModel(path, runtime, precision)  # type: ignore[arg-type]
        run = partial(run_predict, exported, clock=clock)
    else:
        ours = fasterrcnn.create_model(
            args.model, weights=weights, device=args.device, precision=label
        )
        run = partial(run_predict, ours, clock=clock)
    del weights  # only the configuration measured stays
    gc.collect()
    for _ in range(args.warmup):
        run(images[0])
    times, detections = [], []
    for image in images:
        samples = [run(image) for _ in range(args.repeat)]
        times.append(statistics.median(t for t, _ in samples))
        detections.append(samples[-1][1])
    status = Path("/proc/self/status").read_text()
    kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    print(json.dumps({"times": times, "detections": detections, "peak_rss_mb": kb / 1024}))


def time_configurations(setup: Setup) -> dict[str, dict[str, Any]]:
    """Time each configuration of the table in a fresh process of its own, one after the
    other, with a progress line for each on stderr; keyed by the table's names."""
    labels = configuration_labels(setup.args, setup.tv_model is not None)
    print(file=sys.stderr)
    configurations: dict[str, dict[str, Any]] = {}
    for label in labels:
        result = time_in_own_process(setup.args, label, setup.folder, setup.export_dir)
        if "error" not in result:
            result.update(summarize(result["times"]))
        name = "torchvision fp32" if label == "torchvision" else (
            label if label in BACKENDS else f"ours {label}"
        )  # fmt: skip
        configurations[name] = result
        shown = result.get("error") or f"{result['mean']:.3f} s/image"
        print(f"own process: {label}: {shown}", file=sys.stderr, flush=True)
    return configurations


def compare_to_torchvision(
    configurations: dict[str, dict[str, Any]], tv_own: list[float] | None
) -> None:
    """Set each timed configuration's ``over_torchvision``: its total time over that of
    torchvision in its own process (``tv_own``), None without it."""
    for result in configurations.values():
        if "error" not in result:
            times = result["times"]
            result["over_torchvision"] = sum(times) / sum(tv_own) if tv_own else None
