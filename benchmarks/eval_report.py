"""What ``eval --report`` adds to an evaluation: the report's time against the evaluation's.

Run from the repository root::

    .venv/bin/python benchmarks/eval_report.py                  # the 160-image mini set
    .venv/bin/python benchmarks/eval_report.py --max-images 20 --repeats 1

One ``python -m fasterrcnn eval --results R --report DIR`` runs the seed's preset (name-seeded
weights, as ``benchmarks/eval.py`` makes them: the values keep the detection counts
realistic, at most 100 per image) on the images, as a user would; its printed figures give
the inference, COCO evaluation and report seconds. Then the report alone is written again in
this process from the same results (``write_report`` with pycocotools run inside it, the
worst images drawn), best of ``--repeats``, and once more for ground-truth boxes jittered by
a few pixels (a model that is mostly right: fewer detections, other errors).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval import MINI, SEED, SLICE, seeded_weights
from read_dataset import cpu_name

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.evaluation.report.writer import ReportOptions, write_report
from fasterrcnn.evaluation.results_json import load_results


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = MINI if MINI.is_dir() else SLICE
    p.add_argument("--images", type=Path, default=root / "val2017")
    p.add_argument("--annotations", type=Path, default=root / "instances_val2017.json")
    p.add_argument("--model", default=SEED)
    p.add_argument("--weights", type=Path, help="checkpoint (default: name-seeded seed weights)")
    p.add_argument("--max-images", type=int, help="evaluate the first N images only")
    p.add_argument("--repeats", type=int, default=3, help="in-process report runs (best of)")
    return p.parse_args()


def run_command(args: argparse.Namespace, weights: Path, out: Path) -> dict[str, float]:
    command = [
        sys.executable, "-m", "fasterrcnn", "eval", "--model", args.model,
        "--weights", str(weights), "--images", str(args.images),
        "--annotations", str(args.annotations), "--results", str(out / "results.json"),
        "--report", str(out / "report"),
    ]  # fmt: skip
    if args.max_images:
        command += ["--max-images", str(args.max_images)]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    if proc.returncode != 0:
        sys.exit(f"error: eval failed:\n{proc.stderr[-3000:]}")
    figures = {}
    for key, pattern in (
        ("inference", r"inference: \d+ images in ([\d.]+) s"),
        ("evaluation", r"evaluation: .* in ([\d.]+) s"),
        ("report", r"report: .* in ([\d.]+) s"),
    ):
        found = re.search(pattern, proc.stdout)
        if found is None:
            sys.exit(f"error: no {key} line in the output:\n{proc.stdout[-2000:]}")
        figures[key] = float(found.group(1))
    deploy = re.search(r"deploy threshold .*", proc.stdout)
    print(f"eval printed: {deploy.group(0) if deploy else 'no deploy line'}")
    return figures


def time_report(
    dataset: CocoDataset, results: np.ndarray, image_ids: list[int], folder: Path, repeats: int
) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        write_report(dataset, results, ReportOptions(folder), image_ids=image_ids,
                     progress=False)  # fmt: skip
        best = min(best, time.perf_counter() - start)
    return best


def jittered_ground_truth(dataset: CocoDataset, image_ids: list[int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = []
    for image_id in image_ids:
        for a in dataset.annotations(image_id):
            x, y, w, h = a["bbox"]
            shift = rng.normal(0, 0.08, 4) * [w, h, w, h]
            rows.append([image_id, x + shift[0], y + shift[1], max(w + shift[2], 1.0),
                         max(h + shift[3], 1.0), rng.uniform(0.3, 1.0), a["category_id"]])  # fmt: skip
    return np.array(rows, np.float64).reshape(-1, 7)


def main() -> None:
    args = parse_args()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; images {args.images}; model {args.model}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = args.weights or seeded_weights(folder)
        figures = run_command(args, weights, folder)
        dataset = CocoDataset.load(args.annotations, image_root=args.images)
        image_ids = [image.id for image in dataset.images[: args.max_images]]
        results = load_results(folder / "results.json", dataset)
        alone = time_report(dataset, results, image_ids, folder / "again", args.repeats)
        jittered = jittered_ground_truth(dataset, image_ids)
        right = time_report(dataset, jittered, image_ids, folder / "jittered", args.repeats)
    whole = figures["inference"] + figures["evaluation"]
    print(f"\n{'':<34}{'seconds':>9}")
    print(f"{'inference (the command)':<34}{figures['inference']:>9.2f}")
    print(f"{'COCO evaluation (the command)':<34}{figures['evaluation']:>9.2f}")
    print(f"{'report (the command)':<34}{figures['report']:>9.2f}"
          f"   {100 * figures['report'] / whole:.1f}% of inference + evaluation")  # fmt: skip
    print(f"{'report alone, same results':<34}{alone:>9.2f}   {len(results)} detections, "
          f"best of {args.repeats}")  # fmt: skip
    print(f"{'report alone, jittered truth':<34}{right:>9.2f}   {len(jittered)} detections")


if __name__ == "__main__":
    main()
