"""Evaluation benchmark: ``fasterrcnn eval`` images/s with 1 and N processes, and the time of
the COCO evaluation step with pycocotools and faster-coco-eval.

Run from the repository root::

    .venv/bin/python benchmarks/eval.py                          # the 160-image mini set
    .venv/bin/python benchmarks/eval.py --max-images 20 --processes 1,2 --json out.json

Each process count runs the real command as a user would: ``python -m fasterrcnn eval`` for
one process, ``torchrun --standalone --nproc-per-node N -m fasterrcnn eval`` for N, with the
machine's cores split evenly (``OMP_NUM_THREADS`` = cores / N). The model is the seed's preset
with the name-seeded weights of tests/helpers/seeded.py written as a MegEngine hub file (values do
not change the cost; they keep the proposal and detection counts realistic), or ``--weights``.
The evaluation step (pycocotools' ``loadRes`` + ``evaluate`` + ``accumulate`` +
``summarize``, through :func:`fasterrcnn.evaluation.coco_metrics.evaluate_results`) is timed
in this process on the one-process run's results, best of ``--eval-repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MINI = (REPO / ".." / "shared" / "data" / "coco-val-mini").resolve()
SLICE = REPO / "tests" / "fixtures" / "coco"
SEED = "faster_rcnn_res50_coco_1x_800size"
SEED_SHAPES = REPO / "tests" / "fixtures" / "megengine_v0" / "megengine_v0_state_dict_shapes.json"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = MINI if MINI.is_dir() else SLICE
    p.add_argument("--images", type=Path, default=root / "val2017")
    p.add_argument("--annotations", type=Path, default=root / "instances_val2017.json")
    p.add_argument("--model", default=SEED)
    p.add_argument("--weights", type=Path, help="checkpoint (default: name-seeded seed weights)")
    p.add_argument("--max-images", type=int, help="evaluate the first N images only")
    p.add_argument("--processes", default="1,2", help="process counts to run (1,2)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores to split")
    p.add_argument("--threads", type=int, help="threads per process (default: cores / processes)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="decoding processes per rank (1)")
    p.add_argument("--eval-repeats", type=int, default=3)
    p.add_argument("--json", type=Path, help="write every figure here")
    return p.parse_args()


def seeded_weights(folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.megengine_pickle import megengine_pickle_bytes
    from helpers.seeded import load_shapes, numpy_seeded

    path = folder / "seed_name_seeded.pkl"
    path.write_bytes(megengine_pickle_bytes(numpy_seeded(load_shapes(SEED_SHAPES))))
    return path


def run_eval(args: argparse.Namespace, weights: Path, processes: int, out: Path) -> dict[str, Any]:
    """One ``fasterrcnn eval`` run: wall time, inference time and images/s."""
    if processes == 1:
        launcher = [sys.executable, "-m", "fasterrcnn"]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={processes}", "-m", "fasterrcnn"]  # fmt: skip
    results = out / f"results_{processes}.json"
    command = [
        *launcher, "eval", "--model", args.model, "--weights", str(weights),
        "--images", str(args.images), "--annotations", str(args.annotations),
        "--results", str(results), "--batch-size", str(args.batch_size),
        "--workers", str(args.workers),
    ]  # fmt: skip
    if args.max_images:
        command += ["--max-images", str(args.max_images)]
    threads = args.threads or max(1, args.cores // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: {processes}-process run failed:\n{proc.stderr[-3000:]}")
    found = re.search(r"inference: (\d+) images in ([\d.]+) s", proc.stdout)
    if found is None:
        sys.exit(f"error: no inference line in the output:\n{proc.stdout[-2000:]}")
    images, seconds = int(found.group(1)), float(found.group(2))
    ap = re.search(r"IoU=0.50:0.95 \| area=   all \| maxDets=100 \] = (-?[\d.]+)", proc.stdout)
    return {
        "processes": processes,
        "threads_per_process": threads,
        "images": images,
        "wall_s": wall,
        "inference_s": seconds,
        "images_per_s": images / seconds,
        "AP": float(ap.group(1)) if ap else None,
        "results": str(results),
    }


def time_evaluation(args: argparse.Namespace, results_file: Path) -> dict[str, Any]:
    """Best-of-N seconds of the COCO evaluation step per backend, and their stats."""
    from fasterrcnn.data.coco import CocoDataset
    from fasterrcnn.evaluation.coco_metrics import evaluate_results
    from fasterrcnn.evaluation.results_json import load_results

    dataset = CocoDataset.load(args.annotations)
    results = load_results(results_file, dataset)
    image_ids = sorted({int(i) for i in results[:, 0]})
    out: dict[str, Any] = {"detections": len(results), "images": len(image_ids)}
    for backend in ("pycocotools", "faster-coco-eval"):
        times, metrics = [], None
        for _ in range(args.eval_repeats):
            start = time.perf_counter()
            try:
                metrics = evaluate_results(dataset, results, image_ids, backend=backend)
            except ImportError as err:
                print(f"note: {err}")
                break
            times.append(time.perf_counter() - start)
        if metrics is not None:
            out[backend] = {"seconds": min(times), "stats": metrics.stats}
    if "faster-coco-eval" in out:
        reference, fast = out["pycocotools"]["stats"], out["faster-coco-eval"]["stats"]
        out["max_stat_difference"] = max(abs(reference[k] - fast[k]) for k in reference)
    return out


def main() -> None:
    args = parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    print(f"images: {args.images} ({args.annotations.name}); model {args.model}; "
          f"{args.cores} cores; batch {args.batch_size}; {args.workers} worker(s) per rank")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = args.weights or seeded_weights(folder)
        runs = [run_eval(args, weights, n, folder) for n in counts]
        evaluation = time_evaluation(args, Path(runs[0]["results"]))
        same = [
            Path(r["results"]).read_bytes() == Path(runs[0]["results"]).read_bytes() for r in runs
        ]
    base = runs[0]
    print(f"\n{'processes':>9} {'threads':>7} {'images':>6} {'wall s':>8} {'infer s':>8} "
          f"{'img/s':>6} {'speed-up':>8} {'AP':>7} same results")  # fmt: skip
    for run, identical in zip(runs, same, strict=True):
        speedup = run["images_per_s"] / base["images_per_s"]
        ap = "-" if run["AP"] is None else f"{run['AP']:.4f}"
        print(f"{run['processes']:>9} {run['threads_per_process']:>7} {run['images']:>6} "
              f"{run['wall_s']:>8.1f} {run['inference_s']:>8.1f} {run['images_per_s']:>6.2f} "
              f"{speedup:>7.2f}x {ap:>7} {'yes' if identical else 'no'}")  # fmt: skip
    print(f"\nCOCO evaluation step ({evaluation['images']} images, "
          f"{evaluation['detections']} detections), best of {args.eval_repeats}:")  # fmt: skip
    py = evaluation["pycocotools"]["seconds"]
    print(f"  pycocotools       {py:.3f} s")
    if "faster-coco-eval" in evaluation:
        fast = evaluation["faster-coco-eval"]["seconds"]
        print(f"  faster-coco-eval  {fast:.3f} s ({py / fast:.1f}x faster; largest stat "
              f"difference {evaluation['max_stat_difference']:.1e})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "evaluation": evaluation}, indent=1))


if __name__ == "__main__":
    main()
