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
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = (REPO / ".." / "shared" / "data" / "coco-val-mini" / "val2017").resolve()
FALLBACK_IMAGES = REPO / "tests" / "fixtures" / "coco" / "val2017"
SEEDED_SHAPES = REPO / "tests" / "fixtures" / "torchvision" / "torchvision_state_dict_shapes.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
STAGES = ("preprocess", "backbone+FPN", "RPN", "RoI heads", "postprocess")

sys.path.insert(0, str(REPO))  # run from a checkout without installing

from int8_kernels import int8_conv_peak  # noqa: E402

import fasterrcnn  # noqa: E402
from fasterrcnn.export import export_model  # noqa: E402
from fasterrcnn.export.quantize import calibration_images, export_int8  # noqa: E402
from fasterrcnn.export.runtimes import ExportedModel  # noqa: E402
from fasterrcnn.inference.memory import prepare_allocator  # noqa: E402
from fasterrcnn.inference.predict import predict  # noqa: E402
from fasterrcnn.modeling.faster_rcnn import size_tensor  # noqa: E402
from fasterrcnn.modeling.precision import PrecisionError, check_precision  # noqa: E402
from fasterrcnn.zoo.checkpoints import detect_family, read_state_dict, unwrap  # noqa: E402


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


# --------------------------------------------------------------------------------------
# Setup: images, weights, models


def find_images(folder: Path | None, count: int) -> tuple[Path, list[Path]]:
    if folder is None:
        folder = DEFAULT_IMAGES if DEFAULT_IMAGES.is_dir() else FALLBACK_IMAGES
        if folder is FALLBACK_IMAGES:
            print(f"note: {DEFAULT_IMAGES} not found; using {FALLBACK_IMAGES}")
    if not folder.is_dir():
        sys.exit(f"error: {folder} is not a folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        sys.exit(f"error: no images in {folder}")
    if len(paths) < count:
        print(f"note: {folder} has only {len(paths)} images")
    return folder, paths[:count]


def seeded_state_dict() -> dict[str, torch.Tensor] | None:
    """torchvision-format name-seeded weights (tests/helpers/seeded.py), or None without tests/."""
    if not SEEDED_SHAPES.is_file():
        return None
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.seeded import load_shapes, torch_seeded

    return torch_seeded(load_shapes(SEEDED_SHAPES))


def load_weights(args: argparse.Namespace, family: str) -> tuple[Any, str]:
    """(weights for create_model, description). Seeded weights give realistic proposal
    counts (timing of the second stage depends on them); fresh init is the last resort."""
    if args.weights is not None:
        return args.weights, str(args.weights)
    if family == "torchvision":
        state = seeded_state_dict()
        if state is not None:
            return state, "name-seeded (tests/helpers/seeded.py torch_seeded)"
    return None, "fresh init (no seeded weights for this preset)"


def torchvision_state(weights: Any) -> dict[str, torch.Tensor] | None:
    """The torchvision-format state dict for the torchvision model, if the weights are one."""
    if weights is None:
        return None
    state = unwrap(read_state_dict(weights)) if isinstance(weights, Path) else weights
    return dict(state) if detect_family(state) == "torchvision" else None


def build_torchvision(state: dict[str, torch.Tensor] | None, device: str) -> tuple[Any, str]:
    """(torchvision model or None, the reason it is None)."""
    try:
        import torchvision
        from torchvision.models.detection import fasterrcnn_resnet50_fpn
    except Exception as err:  # any import failure means "skip"
        return None, f"torchvision not importable ({type(err).__name__}: {err}); skipped"
    if state is None:
        return None, "weights are not a torchvision checkpoint; torchvision run skipped"
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    model.load_state_dict(state)
    return model.eval().to(device), f"torchvision {torchvision.__version__}"


def kernel_backend() -> str:
    """Which nms / roi_align kernels fasterrcnn picked (torchvision's when they import)."""
    try:
        from fasterrcnn.ops.backend import torchvision_op
    except ImportError:
        return "unknown"
    if torchvision_op("nms") and torchvision_op("roi_align"):
        return "torchvision.ops"
    return "pure PyTorch"


# --------------------------------------------------------------------------------------
# Timing


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


def run_predict(model: Any, image: np.ndarray, clock) -> tuple[float, int]:
    """``predict`` end to end, for our model or an exported one (the same engine)."""
    t0 = clock()
    dets = predict(model, image)
    return clock() - t0, len(dets)


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


def time_in_own_process(
    args: argparse.Namespace, label: str, folder: Path, export_dir: Path
) -> dict[str, Any]:
    """Time ``label`` over the images in a fresh process that builds only that
    configuration: runtimes sharing a process slow each other down (their thread pools
    spin for the CPUs, their allocators fragment one heap). The child's figures, or
    ``{"error": ...}`` with its last line of output."""
    command = [
        sys.executable, __file__, "--child", label, "--model", args.model,
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


@torch.inference_mode()
def run_stages(model: fasterrcnn.Detector, image: np.ndarray, clock) -> dict[str, Any]:
    """``predict``'s work piece by piece (as in FasterRCNN.forward/detect): stage times,
    the padded input shape and the number of RoIs."""
    t = [clock()]
    batch = model.preprocess([image])
    t.append(clock())
    features = model.backbone(batch.tensor)
    t.append(clock())
    sizes = size_tensor(batch.image_sizes, batch.tensor.device)
    rpn = model.rpn(features, sizes, batch.padded_size)
    t.append(clock())
    rois = rpn.proposals.rois()
    class_logits, box_deltas = model.roi_heads(features[:4], rois)
    t.append(clock())
    originals = size_tensor(batch.original_sizes, batch.tensor.device)
    dets = model.postprocess(class_logits, box_deltas, rois, sizes, originals)
    for tensor in (dets.boxes, dets.scores, dets.labels):
        tensor.cpu().numpy()  # as predict does
    t.append(clock())
    return {
        "stages": {name: t[i + 1] - t[i] for i, name in enumerate(STAGES)},
        "input_shape": list(batch.tensor.shape[-2:]),
        "resized": list(batch.image_sizes[0]),
        "rois": int(rois.shape[0]),
        "detections": len(dets.scores),
    }


def run_torchvision(
    model: Any, image: np.ndarray, device: str, clock: Callable[[], float]
) -> tuple[float, int]:
    t0 = clock()
    with torch.inference_mode():
        x = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div_(255)
        out = model([x])[0]
        n = len(out["scores"].cpu())
    return clock() - t0, n


# --------------------------------------------------------------------------------------
# FLOPs


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


# --------------------------------------------------------------------------------------
# Report


def load_average() -> float:
    """1-minute load average (nan where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def summarize(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "median": statistics.median(values)}


# --------------------------------------------------------------------------------------
# The steps of main


@dataclass
class Setup:
    """What the main process prepares once, before any timing."""

    args: argparse.Namespace
    clock: Callable[[], float]
    folder: Path
    paths: list[Path]
    images: list[np.ndarray]  # decoded once; decoding is not timed
    weights: Any  # as loaded, kept alive for the whole run
    weights_desc: str
    model: fasterrcnn.Detector
    export_dir: Path
    tv_model: Any  # None when torchvision is skipped
    tv_desc: str
    kernels: str
    matmul_sizes: list[int]


@dataclass
class Peaks:
    """Kernel rates measured at one point of the run: before or after the model runs."""

    matmul: dict[int, float]  # fp32 GFLOP/s at each square size (matmul_peak)
    rates: dict[str, dict[str, float]]  # the floor's rates (floor_rates)


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


def measure_peaks(setup: Setup) -> Peaks:
    """Time the fp32 matmul peak, then the floor's convolution and matmul rates."""
    matmul = matmul_peak(setup.matmul_sizes, setup.args.device)
    return Peaks(matmul, floor_rates(setup.args, max(matmul.values())))


def warm_up(setup: Setup) -> None:
    """Untimed runs of every in-process path on the first image."""
    image, clock = setup.images[0], setup.clock
    for _ in range(setup.args.warmup):
        run_predict(setup.model, image, clock)
        run_stages(setup.model, image, clock)
        if setup.tv_model is not None:
            run_torchvision(setup.tv_model, image, setup.args.device, clock)


def time_images(setup: Setup, flop_model: FlopModel) -> list[dict[str, Any]]:
    """Time every image in this process and count its FLOPs: one record per image, and a
    progress line for each on stderr."""
    torchvision = setup.tv_model is not None
    records = []
    for i, (path, image) in enumerate(zip(setup.paths, setup.images, strict=True)):
        samples = interleaved_samples(setup, image, i)
        rec = image_record(path, image, samples, flop_model, torchvision)
        records.append(rec)
        tv_part = f", torchvision {rec['torchvision_s']:.3f} s" if torchvision else ""
        print(
            f"[{i + 1}/{len(setup.images)}] {path.name}: predict {rec['predict_s']:.3f} s, "
            f"stages {rec['stages_total_s']:.3f} s{tv_part}",
            file=sys.stderr,
            flush=True,
        )
    return records


def interleaved_samples(setup: Setup, image: np.ndarray, index: int) -> dict[str, list[Any]]:
    """``--repeat`` runs of ``predict``, of the stages and of torchvision on ``image``
    (the ``index``-th), interleaved, their order rotating from run to run."""
    model, clock = setup.model, setup.clock
    samples: dict[str, list[Any]] = {"predict": [], "stages": [], "torchvision": []}
    runs: list[tuple[str, Callable[[], Any]]] = [
        ("predict", partial(run_predict, model, image, clock)),
        ("stages", partial(run_stages, model, image, clock)),
    ]
    if setup.tv_model is not None:
        tv_run = partial(run_torchvision, setup.tv_model, image, setup.args.device, clock)
        runs.append(("torchvision", tv_run))
    for r in range(setup.args.repeat):
        shift = (index + r) % len(runs)  # rotate the order so no path always goes first
        for name, fn in runs[shift:] + runs[:shift]:
            samples[name].append(fn())
    return samples


def image_record(
    path: Path,
    image: np.ndarray,
    samples: dict[str, list[Any]],
    flop_model: FlopModel,
    torchvision: bool,
) -> dict[str, Any]:
    """One image's figures: the median times of its runs, its shapes, RoIs and FLOPs."""
    staged = samples["stages"][-1]
    stage_times = {s: statistics.median(x["stages"][s] for x in samples["stages"]) for s in STAGES}
    flops = flop_model(staged["input_shape"], staged["rois"])
    rec = {
        "image": path.name,
        "original": list(image.shape[:2]),
        "resized": staged["resized"],
        "input_shape": staged["input_shape"],
        "rois": staged["rois"],
        "flops": {**flops, "total": sum(flops.values())},
        "predict_s": statistics.median(t for t, _ in samples["predict"]),
        "stages_s": stage_times,
        "stages_total_s": sum(stage_times.values()),
        "detections": samples["predict"][-1][1],
    }
    if torchvision:
        rec["torchvision_s"] = statistics.median(t for t, _ in samples["torchvision"])
        rec["torchvision_detections"] = samples["torchvision"][-1][1]
    return rec


def check_flop_count(setup: Setup, flop_model: FlopModel) -> dict[str, int] | None:
    """With ``--check-flops``: the FLOPs of a real forward of the first image and
    :class:`FlopModel`'s count for the same input shape and RoIs; else None."""
    if not setup.args.check_flops:
        return None
    real, rois, shape = real_forward_flops(setup.model, setup.images[0])
    counted = flop_model(shape, rois)
    return {"real_forward": real, "meta_count": sum(counted.values())}


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
