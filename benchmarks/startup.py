"""Start-up benchmark: ``fasterrcnn detect`` on one image with a local checkpoint, against the
inference alone.

Run from the repository root::

    .venv/bin/python benchmarks/startup.py            # 3 runs of each
    .venv/bin/python benchmarks/startup.py --runs 5 --image path/to.jpg

The checkpoint is the seed preset's name-seeded weights written as a MegEngine hub pickle
(and converted to the native format, the second row). Each CLI run is a fresh process, timed
from launch to exit. A separate fresh process times the pieces: ``import fasterrcnn``, the
model's construction with random initialisation (what building on the meta device avoids),
``create_model(preset, weights=file)`` (meta-device build + reading + loading), then
``predict`` on the image twice (the first run pays one-time kernel set-up, the second is the
inference alone). Medians over the runs are printed, and the CLI's overhead over the first
``predict``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = "faster_rcnn_res50_coco_1x_800size"
IMAGE = REPO / "tests" / "fixtures" / "coco" / "val2017" / "000000000139.jpg"

PIECES = """
import json, sys, time
t0 = time.perf_counter()
import torch
import fasterrcnn
from fasterrcnn.inference.detector import Detector
t1 = time.perf_counter()
Detector(fasterrcnn.get_preset(sys.argv[1]).config)
t2 = time.perf_counter()
model = fasterrcnn.create_model(sys.argv[1], weights=sys.argv[2])
t3 = time.perf_counter()
model.predict(sys.argv[3])
t4 = time.perf_counter()
model.predict(sys.argv[3])
t5 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "random_init_build": t2 - t1, "create_model": t3 - t2,
                  "first_predict": t4 - t3, "predict": t5 - t4}))
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--image", type=Path, default=IMAGE)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def timed_cli(args: list[str], threads: int) -> float:
    env = {"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "fasterrcnn", *args], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: fasterrcnn {' '.join(args)}: {proc.stderr.strip()}")
    return wall


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.megengine_pickle import megengine_pickle_bytes
    from helpers.seeded import DATA, load_shapes, numpy_seeded

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pickle_file = folder / "seed.pkl"
        shapes = load_shapes(DATA / "megengine_v0" / "megengine_v0_state_dict_shapes.json")
        pickle_file.write_bytes(megengine_pickle_bytes(numpy_seeded(shapes)))
        native_file = folder / "seed.safetensors"
        timed_cli(["convert", str(pickle_file), str(native_file), "--model", SEED], args.threads)

        cli: dict[str, list[float]] = {"pickle": [], "native": []}
        pieces: list[dict[str, float]] = []
        for _ in range(args.runs):
            for kind, weights in (("pickle", pickle_file), ("native", native_file)):
                command = ["detect", str(args.image), "--weights", str(weights), "--no-draw"]
                command += ["--out", str(folder / "out")]
                cli[kind].append(timed_cli(command, args.threads))
            proc = subprocess.run(
                [sys.executable, "-c", PIECES, SEED, str(pickle_file), str(args.image)],
                capture_output=True, text=True, check=True,
                env={"OMP_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"},
            )  # fmt: skip
            pieces.append(json.loads(proc.stdout))

    med = {key: statistics.median(p[key] for p in pieces) for key in pieces[0]}
    print(f"image {args.image.name}; {args.threads} threads; medians of {args.runs} runs (s)")
    print(f"  import fasterrcnn (torch included)    {med['import']:6.2f}")
    print(f"  build with random init (avoided)      {med['random_init_build']:6.2f}")
    print(f"  create_model from the .pkl (meta)     {med['create_model']:6.2f}")
    print(f"  first predict                         {med['first_predict']:6.2f}")
    print(f"  predict (inference alone)             {med['predict']:6.2f}")
    for kind in ("pickle", "native"):
        wall = statistics.median(cli[kind])
        print(
            f"  fasterrcnn detect, {kind + ' file':<12}       {wall:6.2f}  = "
            f"{wall / med['predict']:.2f}x the inference alone, "
            f"+{wall - med['first_predict']:.2f} s over the first predict"
        )


if __name__ == "__main__":
    main()
