"""How long reading a dataset takes: 5,000 YOLO label files (and, for the record, the same
boxes as Pascal VOC XML and as one COCO instances file), against decoding the images.

The readers take each image's size from its header and decode no pixel; the baseline is
what a reader that decodes every image would spend, measured on a sample of the same images
and scaled to all of them. Run from the repository root::

    .venv/bin/python benchmarks/read_dataset.py                 # 5,000 images
    .venv/bin/python benchmarks/read_dataset.py --images 20000 --boxes 8

The dataset is written into a temporary folder first (JPEGs of 640 x 480 and 480 x 640,
``--boxes`` boxes per label file, every 10th image without a label file), outside the timing.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from fasterrcnn.data.dataset_files import load_dataset
from fasterrcnn.data.images import read_image
from fasterrcnn.dataset_tools.convert import convert_dataset

SIZES = ((480, 640), (640, 480))  # (h, w)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_yolo(root: Path, images: int, boxes: int, seed: int) -> Path:
    """A YOLO dataset of ``images`` images under ``root``; its data.yaml."""
    rng = random.Random(seed)
    image_dir, label_dir = root / "images" / "train", root / "labels" / "train"
    image_dir.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    encoded = []
    for height, width in SIZES:
        pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8)
        encoded.append(cv2.imencode(".jpg", pixels)[1].tobytes())
    for i in range(images):
        (image_dir / f"{i:06d}.jpg").write_bytes(encoded[i % 2])
        if i % 10 == 9:
            continue  # a background image without a label file
        lines = []
        for _ in range(boxes):
            w, h = rng.uniform(0.02, 0.5), rng.uniform(0.02, 0.5)
            cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
            lines.append(f"{rng.randrange(20)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        (label_dir / f"{i:06d}.txt").write_text("\n".join(lines) + "\n")
    names = "".join(f"  - class{c}\n" for c in range(20))
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames:\n{names}")
    return data


def timed(function, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """The best of ``repeat`` wall times of ``function()``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--boxes", type=int, default=5, help="boxes per label file (5)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N reads (3)")
    parser.add_argument("--decode-sample", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="read-dataset-"))
    try:
        data = write_yolo(work / "yolo", args.images, args.boxes, seed=0)
        dataset = load_dataset(data)  # warms the page cache, as the timed reads find it
        convert_dataset(dataset, "voc", work / "voc")
        convert_dataset(dataset, "coco", work / "coco.json")
        image_dir = work / "yolo" / "images" / "train"
        print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; {args.images} images, "
              f"{len(dataset.coco_dict()['annotations'])} boxes")  # fmt: skip
        yolo = timed(lambda: load_dataset(data), args.repeat)
        voc = timed(lambda: load_dataset(work / "voc", image_dir), args.repeat)
        coco = timed(lambda: load_dataset(work / "coco.json", image_dir), args.repeat)
        sample = sorted(image_dir.iterdir())[: args.decode_sample]
        decode = timed(lambda: [read_image(p) for p in sample], 1) * args.images / len(sample)
        print(f"{'read':<34}{'seconds':>9}{'us/image':>10}{'x decoding':>12}")
        for name, seconds in (
            ("YOLO data.yaml + label files", yolo),
            ("Pascal VOC XML folder", voc),
            ("COCO instances JSON", coco),
            ("decoding every image (baseline)", decode),
        ):
            print(f"{name:<34}{seconds:>9.3f}{seconds / args.images * 1e6:>10.1f}"
                  f"{seconds / decode:>12.3f}")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
