"""Detect objects in an image with the Python API and print them.

    .venv/bin/python examples/predict.py WEIGHTS [IMAGE] [--model NAME]

WEIGHTS is a checkpoint of the preset (for the default, MegEngine's
faster_rcnn_res50_coco_1x_800size_38dot8_5e195d80.pkl).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import fasterrcnn

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("image", nargs="?", default=str(HERE / "images" / "000000000139.jpg"))
    parser.add_argument("--model", default="faster_rcnn_res50_coco_1x_800size")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    args = parser.parse_args()

    model = fasterrcnn.create_model(args.model, weights=args.weights)
    result = model.predict(args.image, score_threshold=args.score_threshold)
    print(f"{args.image}: {len(result)} detections")
    for box, score, name in zip(result.boxes, result.scores, result.class_names, strict=True):
        x1, y1, x2, y2 = (round(float(v), 1) for v in box)
        print(f"  {name:15s} {score:.3f}  [{x1}, {y1}, {x2}, {y2}]")


if __name__ == "__main__":
    main()
