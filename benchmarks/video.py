"""What running on a video costs beyond the model: ``detect`` on an H.264 file (decoding in a
thread, the loop, drawing, H.264 encoding, the JSON lines) against the same frames, already
decoded, through ``iter_detections``; and decoding, drawing and encoding alone, per frame.

Run from the repository root::

    .venv/bin/python benchmarks/video.py                       # 40 frames of 1280 x 720
    .venv/bin/python benchmarks/video.py --frames 100 --model faster_rcnn_res50_coco_1x_800size

The video pans across a COCO image (tests/fixtures). The model is ``--model`` with random
weights (the convolutions cost the same), or ``--weights``; drawing alone is timed with 20
labelled boxes a frame.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_dataset import cpu_name

import fasterrcnn
from fasterrcnn.data.images import read_image
from fasterrcnn.data.video import VideoReader, VideoWriter
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.drawing import draw_detections
from fasterrcnn.inference.video_run import detect_video

IMAGE = Path(__file__).resolve().parents[1] / "tests/fixtures/coco/val2017/000000000139.jpg"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--model", default="faster_rcnn_res18_coco_3x_800size")
    p.add_argument("--weights", help="checkpoint (default: random weights)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--score-threshold", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    return p.parse_args()


def pan(frames: int, width: int, height: int) -> list[np.ndarray]:
    image = read_image(IMAGE)
    big = cv2.resize(image, (width + 4 * frames, height + 2 * frames))
    return [np.ascontiguousarray(big[2 * i : 2 * i + height, 4 * i : 4 * i + width])
            for i in range(frames)]  # fmt: skip


def busy_frame(width: int, height: int, boxes: int = 20) -> Detections:
    """``boxes`` labelled boxes spread over a frame: what drawing is timed on."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, [width - 100, height - 100], (boxes, 2))
    return Detections(
        boxes=np.hstack([xy, xy + rng.uniform(20, 100, (boxes, 2))]).astype(np.float32),
        scores=rng.uniform(0.5, 1, boxes).astype(np.float32),
        category_ids=np.arange(1, boxes + 1), class_names=["person"] * boxes,
        image_size=(height, width),
    )  # fmt: skip


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    model = fasterrcnn.create_model(args.model, weights=args.weights).eval()
    frames = pan(args.frames, args.width, args.height)
    print(f"CPU: {cpu_name()}, {args.threads} threads; {args.model}; {args.frames} frames of "
          f"{args.width} x {args.height}, batch {args.batch_size}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "pan.mp4"
        with VideoWriter(source, Fraction(30), args.width, args.height) as writer:
            for frame in frames:
                writer.write(frame)
        # warm-up: the first run pays for allocations and kernel choices
        list(fasterrcnn.iter_detections(model, frames[:2], batch_size=args.batch_size))
        start = time.perf_counter()
        list(fasterrcnn.iter_detections(
            model, frames, batch_size=args.batch_size, score_threshold=args.score_threshold
        ))  # fmt: skip
        images_s = time.perf_counter() - start
        with VideoReader(source) as reader:
            run = detect_video(model, reader, folder, "out", batch_size=args.batch_size,
                               score_threshold=args.score_threshold, progress=False)  # fmt: skip
        start = time.perf_counter()
        with VideoReader(source) as reader:
            decoded = sum(1 for _ in reader)
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        drawn = [draw_detections(f, busy_frame(args.width, args.height), channels="RGB")
                 for f in frames]  # fmt: skip
        draw_s = time.perf_counter() - start
        start = time.perf_counter()
        with VideoWriter(folder / "encode.mp4", Fraction(30), args.width, args.height) as writer:
            for frame in drawn:
                writer.write(frame)
        encode_s = time.perf_counter() - start
    n = args.frames
    print(f"\n{'':<38}{'frames/s':>9}{'ms/frame':>10}")
    print(
        f"{'frames as arrays (iter_detections)':<38}{n / images_s:>9.2f}{1000 * images_s / n:>10.1f}"
    )
    print(f"{'detect on the video (all of it)':<38}{run.frames / run.seconds:>9.2f}"
          f"{1000 * run.seconds / run.frames:>10.1f}   "
          f"{100 * (run.seconds / images_s - 1):+.1f}% against the arrays")  # fmt: skip
    print(
        f"{'  decoding alone (its thread)':<38}{decoded / decode_s:>9.2f}{1000 * decode_s / decoded:>10.1f}"
    )
    print(f"{'  drawing alone, 20 boxes a frame':<38}{n / draw_s:>9.2f}{1000 * draw_s / n:>10.1f}")
    print(f"{'  H.264 encoding alone':<38}{n / encode_s:>9.2f}{1000 * encode_s / n:>10.1f}")


if __name__ == "__main__":
    main()
