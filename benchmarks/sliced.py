"""Sliced inference on a large image: ``fasterrcnn``'s tiles against SAHI's
``get_sliced_prediction`` running the same model (a ``sahi`` DetectionModel wrapper around it),
the same tiles, overlap and whole-image pass: seconds, and how far the merged detections agree.

SAHI needs ``opencv-python`` beside this package's headless OpenCV, so run it from an
environment with ``sahi`` installed (the model and its ops are the same torch code there)::

    python -m venv side && side/bin/pip install torch torchvision sahi tqdm safetensors \
        pycocotools pyyaml && side/bin/pip install --no-deps -e .
    side/bin/python benchmarks/sliced.py                    # 4000 x 3000, tiles of 1024
    side/bin/python benchmarks/sliced.py --slice 640 --overlap 0.2 --batch-size 4

The image is a 4 x 3 mosaic of the COCO images in tests/fixtures, each scaled into a
1000 x 1000 cell. The model is ``--model`` with ``--weights``, or the torchvision preset with
name-seeded weights (tests/helpers/seeded.py): many detections of every size, which is what
the merging is compared on. Both merges are run: NMM (SAHI's GREEDYNMM with IOS, our
``merge="nmm"``) and NMS (SAHI's NMS with IOU, our ``merge="nms"``), at the same threshold.

Agreement: each merged detection of ours is matched one to one (greedy, by score) with an
unmatched SAHI detection of the same class at IoU >= 0.9; the table gives the fraction of each
side's detections matched. The tile sets are asserted to be equal before timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.parity import match_fraction
from inference_setup import seeded_state_dict
from read_dataset import cpu_name

import fasterrcnn
from fasterrcnn.data.images import read_image
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.loop import run_inference
from fasterrcnn.inference.slicing import SliceOptions, detect_sliced, tile_windows

FIXTURES = Path(__file__).resolve().parents[1] / "tests/fixtures/coco/val2017"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="torchvision_fasterrcnn_resnet50_fpn")
    p.add_argument("--weights", help="checkpoint (default: name-seeded torchvision weights)")
    p.add_argument("--slice", type=int, default=1024)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--score-threshold", type=float, default=0.3)
    p.add_argument("--merge-threshold", type=float, default=0.5)
    p.add_argument("--runs", type=int, default=1, help="timed runs of each; the best is shown")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    return p.parse_args()


def mosaic(width: int = 4000, height: int = 3000, cell: int = 1000) -> np.ndarray:
    """The COCO fixtures scaled into ``cell``-sized squares (aspect kept, grey around)."""
    paths = sorted(FIXTURES.glob("*.jpg"))
    image = np.full((height, width, 3), 114, np.uint8)
    for k, (y, x) in enumerate(
        (y, x) for y in range(0, height, cell) for x in range(0, width, cell)
    ):
        src = read_image(paths[k % len(paths)])
        scale = cell / max(src.shape[:2])
        h, w = round(src.shape[0] * scale), round(src.shape[1] * scale)
        image[y : y + h, x : x + w] = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)
    return image


def sahi_model(model: Any, score_threshold: float) -> Any:
    """A SAHI DetectionModel that runs ``model`` through this package's engine."""
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction

    class Wrapped(DetectionModel):
        def load_model(self) -> None:
            raise RuntimeError("the model is passed in")

        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model  # class names come with each detection

        def _run(self, images: list[np.ndarray]) -> list[Detections]:
            # SAHI's threshold is applied below (score > threshold), as its own wrappers do.
            results = run_inference(self.model, images, batch_size=len(images), score_threshold=0)
            return [r.detections for r in results]  # type: ignore[misc]

        def perform_inference(self, image: np.ndarray) -> None:
            self._original_predictions = self._run([image])

        def perform_batch_inference(self, images: list[np.ndarray]) -> None:
            self._batch_images = None  # batched here, not one by one in the base class
            self._original_predictions = self._run(images)

        def _create_object_prediction_list_from_original_predictions(
            self, shift_amount_list: Any = None, full_shape_list: Any = None
        ) -> None:
            shifts = shift_amount_list or [[0, 0]]
            if isinstance(shifts[0], int):
                shifts = [shifts]
            shapes = full_shape_list
            if shapes is not None and isinstance(shapes[0], int):
                shapes = [shapes]
            per_image = []
            for i, dets in enumerate(self._original_predictions):
                keep = dets.scores > self.confidence_threshold
                per_image.append([
                    ObjectPrediction(
                        bbox=box.tolist(), category_id=int(cid), category_name=name,
                        score=float(score), shift_amount=shifts[i],
                        full_shape=None if shapes is None else shapes[i],
                    )
                    for box, score, cid, name, k in zip(
                        dets.boxes, dets.scores, dets.category_ids, dets.class_names, keep,
                        strict=True,
                    ) if k
                ])  # fmt: skip
            self._object_prediction_list_per_image = per_image

    return Wrapped(model=model, confidence_threshold=score_threshold, device="cpu")


def sahi_detections(result: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    preds = result.object_prediction_list
    boxes = np.array([p.bbox.to_xyxy() for p in preds], np.float32).reshape(-1, 4)
    return boxes, np.array([p.score.value for p in preds]), np.array([p.category.id for p in preds])


def agreement(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> float:
    """The fraction of ``a``'s detections (by decreasing score) that find their own, one to
    one, among ``b``'s of the same class at IoU >= 0.9, whatever their scores."""
    order = np.argsort(-a[1], kind="stable")
    return match_fraction(a[0][order], a[1][order], b[0], b[1], a[2][order], b[2],
                          min_iou=0.9, max_score_diff=np.inf)  # fmt: skip


def best_time(runs: int, fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """The best of ``runs`` timed calls of ``fn(*args, **kwargs)``, and its last result."""
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    args = parse_args()
    from sahi import __version__ as sahi_version
    from sahi.predict import get_sliced_prediction
    from sahi.slicing import get_slice_bboxes

    torch.set_num_threads(args.threads)
    weights, described = (args.weights, args.weights) if args.weights else (
        seeded_state_dict(), "name-seeded")  # fmt: skip
    model = fasterrcnn.create_model(args.model, weights=weights).eval()
    image = mosaic()
    height, width = image.shape[:2]
    ours_tiles = tile_windows(height, width, args.slice, args.overlap).tolist()
    sahi_tiles = get_slice_bboxes(height, width, args.slice, args.slice, False, args.overlap,
                                  args.overlap)  # fmt: skip
    assert ours_tiles == sahi_tiles, "the two tile sets differ: choose size * overlap integral"
    print(f"CPU: {cpu_name()}, {args.threads} threads; {args.model} ({described}); "
          f"{width} x {height} image, {len(ours_tiles)} tiles of {args.slice} "
          f"(overlap {args.overlap}) + the whole image; score > {args.score_threshold}, "
          f"merge threshold {args.merge_threshold}; sahi {sahi_version}; best of {args.runs}")  # fmt: skip
    wrapped = sahi_model(model, args.score_threshold)
    list(run_inference(model, [image[:800, :800]] * 2, batch_size=2))  # warm-up
    rows = []
    for ours_merge, sahi_merge, metric in (("nmm", "GREEDYNMM", "IOS"), ("nms", "NMS", "IOU")):
        options = SliceOptions(args.slice, args.overlap, merge=ours_merge,  # type: ignore[arg-type]
                               merge_iou=args.merge_threshold)  # fmt: skip
        for batch in sorted({1, args.batch_size}):
            ours_s, dets = best_time(
                args.runs, detect_sliced, model, image, options, batch_size=batch,
                score_threshold=args.score_threshold,
            )  # fmt: skip
            ours = (dets.boxes, dets.scores, dets.category_ids)
            sahi_s, result = best_time(
                args.runs, get_sliced_prediction, image, wrapped, args.slice, args.slice,
                args.overlap, args.overlap, perform_standard_pred=True,
                postprocess_type=sahi_merge, postprocess_match_metric=metric,
                postprocess_match_threshold=args.merge_threshold, verbose=0, batch_size=batch,
                force_postprocess_type=True,
            )  # fmt: skip
            theirs = sahi_detections(result)
            rows.append((ours_merge, batch, ours_s, sahi_s, len(ours[0]), len(theirs[0]),
                         agreement(ours, theirs), agreement(theirs, ours)))  # fmt: skip
    print(f"\n{'merge':<6}{'batch':>6}{'ours s':>9}{'SAHI s':>9}{'ratio':>7}"
          f"{'ours n':>8}{'SAHI n':>8}{'ours in SAHI':>14}{'SAHI in ours':>14}")  # fmt: skip
    for merge, batch, ours_s, sahi_s, n_ours, n_sahi, in_sahi, in_ours in rows:
        print(f"{merge:<6}{batch:>6}{ours_s:>9.2f}{sahi_s:>9.2f}{ours_s / sahi_s:>7.2f}"
              f"{n_ours:>8}{n_sahi:>8}{in_sahi:>14.3f}{in_ours:>14.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
