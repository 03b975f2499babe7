"""Memory benchmark: peak memory of ``fasterrcnn detect`` on few and on many images.

Run from the repository root::

    .venv/bin/python benchmarks/detect_memory.py                  # 20 and 1,000 images
    .venv/bin/python benchmarks/detect_memory.py --counts 20,200 --model faster_rcnn_res18_coco_3x_800size

The images are the mini set's, repeated (a folder of symbolic links) until each count is
reached. Each count runs the real command in a fresh process; every 0.1 s this script reads
from /proc the memory of its whole process tree (the command and its DataLoader workers) as
PSS (resident pages, those the workers share with the process they were forked from counted
once) and the peak RSS of the command's own process (the kernel's high-water mark). It
reports the tree's peak, its value once a tenth of the run is done and at the end, the
command's peak RSS, and each peak's ratio to the first count's. Memory that does not grow with the number of images shows as ratios near 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MINI = (REPO / ".." / "shared" / "data" / "coco-val-mini" / "val2017").resolve()
SLICE = REPO / "tests" / "fixtures" / "coco" / "val2017"
SEED = "faster_rcnn_res50_coco_1x_800size"
SHAPES = {
    SEED: ("megengine_v0", "megengine_v0_state_dict_shapes.json"),
    "faster_rcnn_res18_coco_3x_800size": (
        "megengine_variants/faster_rcnn_res18_coco_3x_800size",
        "faster_rcnn_res18_coco_3x_800size_state_dict_shapes.json",
    ),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=MINI if MINI.is_dir() else SLICE)
    p.add_argument("--counts", default="20,1000", help="image counts to run (20,1000)")
    p.add_argument("--model", default=SEED, choices=sorted(SHAPES))
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--draw", action="store_true", help="also write drawn images (JSON only)")
    p.add_argument("--json", type=Path)
    return p.parse_args()


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += children.get(pid, [])
    return found


def _pss(pid: int) -> int:
    """Proportional set size in bytes: resident pages, shared ones split among sharers."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_memory(root: int) -> tuple[int, int]:
    """(PSS of ``root`` and all its descendants, peak RSS of ``root`` alone so far), in bytes.

    PSS counts the pages DataLoader workers share with the process they were forked from
    once, where summing RSS would count them in every worker. The peak RSS is the kernel's
    high-water mark (``VmHWM``), exact between samples."""
    hwm = 0
    try:
        for line in Path(f"/proc/{root}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    return sum(_pss(pid) for pid in _descendants(root)), hwm


def run(args: argparse.Namespace, weights: Path, count: int, folder: Path) -> dict[str, Any]:
    sources = sorted(p for p in args.images.iterdir() if p.suffix.lower() == ".jpg")
    images = folder / f"images_{count}"
    images.mkdir()
    for i in range(count):
        (images / f"{i:05d}_{sources[i % len(sources)].name}").symlink_to(sources[i % len(sources)])
    command = [
        sys.executable, "-m", "fasterrcnn", "detect", str(images), "--model", args.model,
        "--weights", str(weights), "--out", str(folder / f"out_{count}"),
        "--batch-size", str(args.batch_size), "--workers", str(args.workers),
    ]  # fmt: skip
    if not args.draw:
        command.append("--no-draw")
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = peak_main = 0
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        pss, rss = tree_memory(proc.pid)
        peak, peak_main = max(peak, pss), max(peak_main, rss)
        if pss:
            samples.append((time.perf_counter() - start, pss))
        time.sleep(0.1)
    wall = time.perf_counter() - start
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        sys.exit(f"error: detect on {count} images exited {proc.returncode}: {output}")
    # Memory once the first tenth of the images is done, against the end: growth shows here.
    tenth = [rss for t, rss in samples if t >= wall * 0.1]
    return {
        "images": count,
        "wall_s": wall,
        "peak_tree_mb": peak / 2**20,
        "peak_main_rss_mb": peak_main / 2**20,
        "at_10pct_mb": (tenth[0] if tenth else peak) / 2**20,
        "at_end_mb": (samples[-1][1] if samples else peak) / 2**20,
        "summary": output.strip().splitlines()[-1] if output.strip() else "",
    }


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.megengine_pickle import megengine_pickle_bytes
    from helpers.seeded import DATA, load_shapes, numpy_seeded

    counts = [int(n) for n in args.counts.split(",")]
    folder_name, shapes = SHAPES[args.model]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = folder / "weights.pkl"
        state = numpy_seeded(load_shapes(DATA / folder_name / shapes))
        weights.write_bytes(megengine_pickle_bytes(state))
        rows = [run(args, weights, n, folder) for n in counts]
    print(f"model {args.model}; batch {args.batch_size}; {args.workers} worker(s); "
          f"{'drawn images + JSON' if args.draw else 'JSON only'}")  # fmt: skip
    print(f"{'images':>7} {'wall s':>8} {'peak MB':>8} {'ratio':>6} {'at 10% MB':>9} "
          f"{'at end MB':>9} {'main peak MB':>12} {'ratio':>6}")  # fmt: skip
    for row in rows:
        print(f"{row['images']:>7} {row['wall_s']:>8.1f} {row['peak_tree_mb']:>8.0f} "
              f"{row['peak_tree_mb'] / rows[0]['peak_tree_mb']:>6.3f} "
              f"{row['at_10pct_mb']:>9.0f} {row['at_end_mb']:>9.0f} "
              f"{row['peak_main_rss_mb']:>12.0f} "
              f"{row['peak_main_rss_mb'] / rows[0]['peak_main_rss_mb']:>6.3f}")  # fmt: skip
        print(f"        {row['summary']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
