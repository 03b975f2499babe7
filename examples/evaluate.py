"""Evaluate a model on a COCO-format dataset with the Python API and print its metrics.

    .venv/bin/python examples/evaluate.py WEIGHTS IMAGES ANNOTATIONS [--model NAME] [--max-images N]

WEIGHTS is a checkpoint of the preset (for the default, MegEngine's
faster_rcnn_res50_coco_1x_800size_38dot8_5e195d80.pkl); IMAGES the folder of the images the
instances file ANNOTATIONS lists (for example COCO's val2017 and instances_val2017.json).
"""

from __future__ import annotations

import argparse

import fasterrcnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("images")
    parser.add_argument("annotations")
    parser.add_argument("--model", default="faster_rcnn_res50_coco_1x_800size")
    parser.add_argument("--max-images", type=int)
    args = parser.parse_args()

    model = fasterrcnn.create_model(args.model, weights=args.weights)
    metrics = fasterrcnn.evaluate(
        model, args.images, args.annotations, max_images=args.max_images, progress=True
    )
    print(metrics.summary)
    print(metrics.table())
    best = max((c for c in metrics.per_category if c.ap is not None), key=lambda c: c.ap or 0)
    print(f"AP {metrics.stats['AP']:.3f} on {metrics.num_images} images; best class {best.name}")


if __name__ == "__main__":
    main()
