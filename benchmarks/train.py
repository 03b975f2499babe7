"""Training benchmark: seconds per training iteration and peak memory on the CPU, 2 images at
the 800 setting (short side 800, long side at most 1333).

Run from the repository root::

    .venv/bin/python benchmarks/train.py                          # both presets
    .venv/bin/python benchmarks/train.py --iters 3 --warmup 1 --precision fp32,bf16 --json out.json
    # with torchvision, which is also timed (its own fasterrcnn_resnet50_fpn training step)
    PYTHONPATH=$PWD /path/to/venv-with-torchvision/bin/python benchmarks/train.py

An iteration is what a training loop does per batch: forward with the targets, the four
losses, ``zero_grad``, backward and an SGD step (lr 0.02, momentum 0.9, weight decay 1e-4, on
the trainable parameters only). The batch is built once, before any timing, as training
builds it (``TrainingDataset`` with ``short_sides=(800,)``, no flip, ``collate_training``),
from two real images of the mini COCO set with their real ground truth. Weights are the
name-seeded ones of tests/helpers/seeded.py (realistic proposal counts, unlike random init).

Each configuration (model x precision) runs in its own process, so each peak is its own: the
peak resident memory of the training iterations (``VmHWM`` of /proc/self/status, reset after
the model and batch are built where the kernel allows it) and the resident memory before
the first iteration.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
MINI = (REPO / ".." / "shared" / "data" / "coco-val-mini").resolve()
SLICE = REPO / "tests" / "fixtures" / "coco"
SEED = "faster_rcnn_res50_coco_1x_800size"
TV_PRESET = "torchvision_fasterrcnn_resnet50_fpn"
TORCHVISION = "torchvision"  # torchvision's own model, not a preset of this library
MODELS = (SEED, TV_PRESET, TORCHVISION)
SHAPES = {
    SEED: REPO / "tests" / "fixtures" / "megengine_v0" / "megengine_v0_state_dict_shapes.json",
    TV_PRESET: REPO / "tests" / "fixtures" / "torchvision" / "torchvision_state_dict_shapes.json",
}
PRECISIONS = ("fp32", "bf16")
SKIPPED = 3  # a worker's exit status when its model cannot run here (torchvision missing)
LR, MOMENTUM, WEIGHT_DECAY = 0.02, 0.9, 1e-4

sys.path.insert(0, str(REPO))  # run from a checkout without installing
sys.path.insert(0, str(REPO / "tests"))  # the name-seeded weight recipes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    root = MINI if MINI.is_dir() else SLICE
    p.add_argument("--images", type=Path, default=root / "val2017")
    p.add_argument("--annotations", type=Path, default=root / "instances_val2017.json")
    p.add_argument(
        "--image-ids",
        default=None,
        help="two COCO image ids, comma-separated (default: the first two landscape images "
        "with a usable box, as the aspect-grouped sampler would batch them)",
    )
    p.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated, of {', '.join(MODELS)} (default: all; "
        f"'{TORCHVISION}' is torchvision's own model, skipped where it does not import)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated, of fp32 and bf16 (autocast on the CPU); each is a row (fp32)",
    )
    p.add_argument("--iters", type=int, default=5, help="timed iterations (5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first (2)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run (2)")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one configuration
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.precision = [m.strip() for m in args.precision.split(",") if m.strip()]
    for model in args.models:
        if model not in MODELS:
            p.error(f"--models: unknown model {model!r}; choose from {', '.join(MODELS)}")
    for precision in args.precision:
        if precision not in PRECISIONS:
            p.error(f"--precision: unknown precision {precision!r}; choose fp32 or bf16")
    if args.iters < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--iters and --threads must be >= 1, --warmup >= 0")
    if args.image_ids is not None:
        ids = [int(i) for i in args.image_ids.split(",")]
        if len(ids) != 2:
            p.error("--image-ids: give exactly two ids")
        args.image_ids = ids
    return args


# --------------------------------------------------------------------------------------
# Worker: one configuration in this process


def memory_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in MiB, None without it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_memory() -> bool:
    """Reset ``VmHWM`` to the current resident size (Linux >= 4.0); whether it could."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def training_batch(args: argparse.Namespace, model_name: str) -> Any:
    """The benchmark's two samples as training builds them, for ``model_name``'s classes and
    input (for torchvision's own model, those of the torchvision preset)."""
    from fasterrcnn.data.coco import CocoDataset
    from fasterrcnn.data.train_dataset import WIDE, TrainingDataset
    from fasterrcnn.data.training_batch import collate_training
    from fasterrcnn.zoo.presets import PRESETS

    config = PRESETS[TV_PRESET if model_name == TORCHVISION else model_name].config
    coco = CocoDataset.load(args.annotations, args.images, strict_boxes=False)
    dataset = TrainingDataset(
        coco, config.classes, config.input, short_sides=(800,), max_side=1333, flip_prob=0.0
    )
    if args.image_ids is None:
        groups = dataset.aspect_groups()
        indices = [i for i in range(len(dataset)) if groups[i] == WIDE][:2]
    else:
        ids = dataset.image_ids
        missing = [i for i in args.image_ids if i not in ids]
        if missing:
            sys.exit(f"error: image ids {missing} have no usable box in {args.annotations}")
        indices = [ids.index(i) for i in args.image_ids]
    samples = [dataset[(index, index)] for index in indices]
    return dataset, indices, collate_training(samples), config


def seeded_state_dict(model_name: str) -> dict[str, Any]:
    from helpers.seeded import load_shapes, numpy_seeded, torch_seeded

    shapes = load_shapes(SHAPES[TV_PRESET if model_name == TORCHVISION else model_name])
    return numpy_seeded(shapes) if model_name == SEED else torch_seeded(shapes)


def our_step(args: argparse.Namespace, model_name: str) -> tuple[Callable[[], dict], dict]:
    """(one training iteration of this library's model, facts about the run)."""
    import fasterrcnn
    from fasterrcnn.ops.backend import torchvision_op

    _, _, batch, _ = training_batch(args, model_name)
    model = fasterrcnn.create_model(model_name, weights=seeded_state_dict(model_name)).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    autocast = _autocast(args.precision[0])

    def step() -> dict[str, float]:
        with autocast():
            raw = model(batch.images, batch.image_sizes, batch.targets)
            losses = model.losses(raw, batch.targets)
        optimizer.zero_grad(set_to_none=True)
        torch.stack(list(losses.values())).sum().backward()
        optimizer.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    kernels = "torchvision.ops" if torchvision_op("roi_align") else "pure PyTorch"
    facts = {
        "input": list(batch.images.shape),
        "image_ids": batch.image_ids,
        "boxes": [len(t.boxes) for t in batch.targets],
        "trainable_params": sum(p.numel() for p in params),
        "kernels": kernels,
    }
    return step, facts


def torchvision_step(args: argparse.Namespace) -> tuple[Callable[[], dict], dict]:
    """One training iteration of torchvision's own ``FasterRCNN`` (frozen batch norm, stem and
    res2 frozen, as torchvision builds it for trained weights) on the same images, as [0, 1]
    RGB tensors of their original size with original-pixel targets (its transform resizes
    them to 800 / 1333 and normalizes, inside the timed step)."""
    try:
        import torchvision
        from torchvision.models import resnet50
        from torchvision.models.detection import FasterRCNN
        from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
        from torchvision.ops.misc import FrozenBatchNorm2d
    except Exception as err:  # any import failure means "skip"
        print(f"torchvision not importable ({type(err).__name__}: {err})")
        sys.exit(SKIPPED)
    from fasterrcnn.data.images import read_image

    dataset, indices, batch, config = training_batch(args, TORCHVISION)
    images, targets = [], []
    for index in indices:
        rgb = read_image(dataset.image_path(index))
        images.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
        boxes, labels = dataset.boxes(index)
        category_ids = torch.tensor(config.classes.category_ids)[torch.from_numpy(labels)]
        targets.append({"boxes": torch.from_numpy(boxes).float(), "labels": category_ids})
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    model = FasterRCNN(_resnet_fpn_extractor(body, 3), num_classes=91)
    model.load_state_dict(seeded_state_dict(TORCHVISION))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    autocast = _autocast(args.precision[0])
    seen: dict[str, Any] = {}
    model.transform.register_forward_hook(lambda m, i, out: seen.update(shape=out[0].tensors))

    def step() -> dict[str, float]:
        with autocast():
            losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        torch.stack(list(losses.values())).sum().backward()
        optimizer.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    facts = {
        "input": None,
        "image_ids": batch.image_ids,
        "boxes": [len(t["boxes"]) for t in targets],
        "trainable_params": sum(p.numel() for p in params),
        "kernels": f"torchvision {torchvision.__version__}",
        "seen": seen,
    }
    return step, facts


def _autocast(precision: str) -> Callable[[], AbstractContextManager[Any]]:
    if precision == "bf16":
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext


def run_worker(args: argparse.Namespace) -> None:
    from fasterrcnn.inference.memory import release_free_memory

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    if args.worker == TORCHVISION:
        step, facts = torchvision_step(args)
    else:
        step, facts = our_step(args, args.worker)
    setup_s = time.perf_counter() - start
    gc.collect()
    release_free_memory(keep=0)  # every free page back, whatever the policy
    setup_peak = memory_mb("VmHWM")
    rss_before = memory_mb("VmRSS")
    peak_reset = reset_peak_memory()
    times, losses = [], []
    for i in range(args.warmup + args.iters):
        start = time.perf_counter()
        values = step()
        elapsed = time.perf_counter() - start
        if i >= args.warmup:
            times.append(elapsed)
        losses.append(values)
    seen = facts.pop("seen", None)
    if seen is not None and "shape" in seen:
        facts["input"] = list(seen["shape"].shape)
    result = {
        "model": args.worker,
        "precision": args.precision[0],
        "threads": args.threads,
        "torch": torch.__version__,
        "setup_s": setup_s,
        "times_s": times,
        "mean_s": statistics.fmean(times),
        "median_s": statistics.median(times),
        "min_s": min(times),
        "peak_rss_mb": memory_mb("VmHWM"),
        "peak_is_training_only": peak_reset,
        "setup_peak_rss_mb": setup_peak,
        "rss_before_mb": rss_before,
        "losses_first": losses[0],
        "losses_last": losses[-1],
        "losses_finite": all(v == v and abs(v) != float("inf") for d in losses for v in d.values()),
        **facts,
    }
    assert args.result is not None
    args.result.write_text(json.dumps(result))


# --------------------------------------------------------------------------------------
# Driver: one process per configuration, then the table


def run_configuration(
    args: argparse.Namespace, model: str, precision: str, folder: Path
) -> dict[str, Any] | str:
    """The worker's figures, or a line saying why it did not run."""
    out = folder / f"{model}_{precision}.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", model, "--result", str(out),
        "--precision", precision, "--iters", str(args.iters), "--warmup", str(args.warmup),
        "--threads", str(args.threads), "--images", str(args.images),
        "--annotations", str(args.annotations),
    ]  # fmt: skip
    if args.image_ids:
        command += ["--image-ids", ",".join(str(i) for i in args.image_ids)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode == SKIPPED:
        return f"skipped: {proc.stdout.strip()}"
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"failed (exit status {proc.returncode}): {tail[0]}"
    return dict(json.loads(out.read_text()))


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def print_table(rows: list[dict[str, Any]]) -> None:
    tv = {r["precision"]: r for r in rows if r["model"] == TORCHVISION}
    print(
        f"\n{'model':<36} {'prec':<5} {'mean s/it':>9} {'median':>8} {'min':>8} "
        f"{'peak RSS MB':>11} {'before MB':>9} {'vs tv':>6}  input"
    )
    for row in rows:
        ref = tv.get(row["precision"])
        ratio = (
            f"{row['median_s'] / ref['median_s']:.2f}"
            if ref is not None and row["model"] != TORCHVISION
            else ""
        )
        peak = row["peak_rss_mb"] or float("nan")
        before = row["rss_before_mb"] or float("nan")
        shape = "x".join(str(n) for n in row["input"] or [])
        print(
            f"{row['model']:<36} {row['precision']:<5} {row['mean_s']:>9.2f} "
            f"{row['median_s']:>8.2f} {row['min_s']:>8.2f} {peak:>11.0f} {before:>9.0f} "
            f"{ratio:>6}  {shape}"
        )
        if not row["losses_finite"]:
            print("    warning: a loss became NaN or infinite; its timings are not typical")
    if any(not r["peak_is_training_only"] for r in rows):
        print("note: peak RSS could not be reset after setup; it includes building the model")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    if TORCHVISION in args.models and importlib.util.find_spec("torchvision") is None:
        print("note: torchvision is not installed here; its own model is skipped")
        args.models.remove(TORCHVISION)
    load_before = _load_average()
    print(
        f"torch {torch.__version__}; {args.threads} thread(s); {os.cpu_count()} CPUs; "
        f"load average {load_before:.2f}; {args.warmup} warm-up + {args.iters} timed "
        f"iterations; images {args.images}"
    )
    import tempfile

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precision:
            for model in args.models:
                result = run_configuration(args, model, precision, Path(tmp))
                if isinstance(result, str):
                    print(f"{model} {precision}: {result}")
                    continue
                rows.append(result)
                print(
                    f"{model} {precision}: median {result['median_s']:.2f} s/iter, peak "
                    f"{result['peak_rss_mb'] or float('nan'):.0f} MB ({result['kernels']})",
                    flush=True,
                )
    if not rows:
        sys.exit("error: no configuration ran")
    first = rows[0]
    print(
        f"batch: images {first['image_ids']} with {first['boxes']} boxes; "
        f"SGD lr {LR} momentum {MOMENTUM} weight decay {WEIGHT_DECAY}"
    )
    print_table(rows)
    load_after = _load_average()
    if max(load_before, load_after) > args.threads + 0.5:
        print(
            f"warning: load average {load_before:.2f} before / {load_after:.2f} after on "
            f"{os.cpu_count()} CPUs: other processes share them, the timings are pessimistic"
        )
    if args.json:
        args.json.write_text(json.dumps({"args": _jsonable(args), "rows": rows}, indent=1))


def _jsonable(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


if __name__ == "__main__":
    main()
