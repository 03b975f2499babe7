"""int8 accuracy on a trained model: COCO AP of the int8 export (onnxruntime and OpenVINO)
against float32 and bfloat16, and how many of float32's detections int8 gives back.

Name-seeded weights cannot judge int8 (random heads amplify rounding), so the model is one
trained by the project's own training code (``benchmarks/bf16_accuracy.py`` trains it; or
``--weights``), evaluated on the images it was trained on, the int8 file calibrated on other
images of the same set (those not evaluated), as a user calibrates on their own data.

Run from the repository root::

    .venv/bin/python benchmarks/int8_accuracy.py --output runs/bf16-accuracy   # its model
    .venv/bin/python benchmarks/int8_accuracy.py --weights model.safetensors --images 8 \\
        --annotations tests/fixtures/coco/instances_val2017.json

Every step is a ``fasterrcnn`` command (printed before it runs): ``export --precision int8``,
then ``eval`` in fp32, bf16 and int8 (``--backend onnxruntime`` and ``openvino``), each
writing its detections. Agreement: the fraction of float32's detections scoring 0.3 or more
that int8 gives too (same class, IoU >= 0.9), image by image.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bf16_accuracy import FALLBACK, MINI, fasterrcnn, first_images
from helpers.parity import match_fraction

SCORE, MATCH_IOU = 0.3, 0.9


def agreement(reference: list[dict], other: list[dict]) -> float:
    """The fraction of ``reference``'s detections (score >= 0.3) that ``other`` has: same
    image and class, IoU >= 0.9, one to one, best first (COCO results, boxes [x, y, w, h])."""
    found = total = 0
    for image_id in {det["image_id"] for det in reference}:
        ref = _arrays([d for d in reference if d["image_id"] == image_id and d["score"] >= SCORE])
        if len(ref[0]) == 0:
            continue
        got = _arrays([d for d in other if d["image_id"] == image_id])
        fraction = match_fraction(*ref[:2], *got[:2], ref[2], got[2], min_iou=MATCH_IOU,
                                  max_score_diff=np.inf)  # fmt: skip
        found += round(fraction * len(ref[0]))
        total += len(ref[0])
    return found / max(total, 1)


def _arrays(detections: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xyxy boxes, scores and category ids, by decreasing score."""
    detections = sorted(detections, key=lambda d: -d["score"])
    boxes = np.array([d["bbox"] for d in detections], np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    scores = np.array([d["score"] for d in detections], np.float64)
    return boxes, scores, np.array([d["category_id"] for d in detections])


@dataclass(frozen=True)
class EvaluationSplit:
    """The trained model, the images it is evaluated on (``annotations``: their instances
    file, written to the output folder) and the other images of the set, to calibrate on."""

    weights: Path
    images: Path
    annotations: Path
    evaluated: list[str]
    others: list[Path]

    def calibration_folder(self, folder: Path, size: int) -> Path:
        """``folder`` holding links to the first ``size`` images not evaluated."""
        folder.mkdir(parents=True, exist_ok=True)
        for path in self.others[:size]:
            if not (folder / path.name).exists():
                (folder / path.name).symlink_to(path.resolve())
        return folder


def split_parser(description: str) -> argparse.ArgumentParser:
    """The options of :func:`evaluation_split`, shared with ``int8_quantizers.py``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", type=Path, default=MINI if MINI.is_dir() else FALLBACK)
    p.add_argument("--annotations", type=Path, help="evaluated set (default: bf16's first N)")
    p.add_argument("--images", type=int, default=24, help="the first N annotated images")
    p.add_argument("--weights", type=Path, help="default: OUTPUT/model_final.safetensors")
    p.add_argument("--calibration-size", type=int, default=300)
    p.add_argument("--output", type=Path, default=Path("runs/bf16-accuracy"))
    return p


def evaluation_split(args: argparse.Namespace) -> EvaluationSplit:
    """The model and the images of :func:`split_parser`'s options; exits when no model."""
    images = args.data / "val2017"
    args.output.mkdir(parents=True, exist_ok=True)
    source = args.annotations or args.data / "instances_val2017.json"
    annotations = args.output / "int8_annotations.json"
    evaluated = first_images(json.loads(source.read_text()), args.images)
    annotations.write_text(json.dumps(evaluated))
    weights = args.weights or args.output / "model_final.safetensors"
    if not weights.is_file():
        sys.exit(f"{weights}: no model (run benchmarks/bf16_accuracy.py or give --weights)")
    names = sorted(image["file_name"] for image in evaluated["images"])
    others = sorted(p for p in images.iterdir() if p.suffix == ".jpg" and p.name not in names)
    return EvaluationSplit(weights, images, annotations, names, others)


def main() -> None:
    args = split_parser(__doc__.split("\n", 1)[0]).parse_args()
    split = evaluation_split(args)
    weights, images, annotations = split.weights, split.images, split.annotations
    results: dict[str, dict] = {}
    detections: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        calibration = split.calibration_folder(Path(tmp), args.calibration_size)
        int8 = args.output / "model-int8.onnx"
        seconds = fasterrcnn(
            "export", "--weights", weights, "--precision", "int8", "--calibration-images",
            calibration, "--calibration-size", args.calibration_size, int8,
        )  # fmt: skip
        print(f"int8 export calibrated on {min(len(split.others), args.calibration_size)} images "
              f"not evaluated, in {seconds:.0f} s")  # fmt: skip
    runs = {
        "fp32": ["--weights", weights],
        "bf16": ["--weights", weights, "--precision", "bf16"],
        "int8 onnxruntime": ["--weights", int8, "--backend", "onnxruntime"],
        "int8 openvino": ["--weights", int8, "--backend", "openvino"],
    }
    for name, options in runs.items():
        stem = name.replace(" ", "_")
        metrics, found = args.output / f"metrics_{stem}.json", args.output / f"results_{stem}.json"
        fasterrcnn(
            "eval", "--images", images, "--annotations", annotations, *options,
            "--metrics", metrics, "--results", found,
        )  # fmt: skip
        results[name] = json.loads(metrics.read_text())
        detections[name] = json.loads(found.read_text())
    header = "".join(f"{name:>18}" for name in runs)
    print(f"\n{'metric':<10}{header}")
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        print(f"{key:<10}" + "".join(f"{results[name][key]:>18.4f}" for name in runs))
    agreed = [agreement(detections["fp32"], detections[name]) for name in runs]
    print(f"{'agreement':<10}" + "".join(f"{a:>18.3f}" for a in agreed))
    deltas = {name: results[name]["AP"] - results["fp32"]["AP"] for name in runs}
    print("AP - fp32: " + ", ".join(f"{n} {d * 100:+.2f}pt" for n, d in deltas.items()))
    print("AP50 - fp32: " + ", ".join(
        f"{n} {(results[n]['AP50'] - results['fp32']['AP50']) * 100:+.2f}pt" for n in runs
    ))  # fmt: skip


if __name__ == "__main__":
    main()
