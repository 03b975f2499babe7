"""Command line: ``fasterrcnn detect`` and ``fasterrcnn models``.

Every expected failure (a bad image, a bad checkpoint, an unknown model, no network) is one
line on stderr and a non-zero exit status: 1 when some images failed or no weights could be
had, 2 for a bad command line, model or checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import torch
from tqdm import tqdm

from fasterrcnn.data.images import ImageError, list_images, read_image
from fasterrcnn.engine.predict import predict
from fasterrcnn.engine.visualize import draw_detections
from fasterrcnn.zoo import (
    CheckpointError,
    DownloadError,
    UnknownModelError,
    create_model,
    get_preset,
    list_models,
)
from fasterrcnn.zoo.presets import DEFAULT_MODEL


class CLIError(Exception):
    """A fatal problem, reported as one line with the given exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fasterrcnn", description="Faster R-CNN (ResNet + FPN) object detection."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    detect = commands.add_parser(
        "detect",
        help="detect objects in images",
        description="Detect objects; write a drawn copy and a JSON file per image into --out.",
    )
    detect.add_argument("sources", nargs="+", help="image files, directories or glob patterns")
    detect.add_argument("--model", default=DEFAULT_MODEL, help=f"preset (default {DEFAULT_MODEL})")
    detect.add_argument("--weights", help="local checkpoint file (default: the preset's download)")
    detect.add_argument("--out", default="out", help="output directory (default: out)")
    detect.add_argument("--score-threshold", type=float, default=0.5, help="(default 0.5)")
    detect.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")

    commands.add_parser("models", help="list the presets and their published weights")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "models":
            return run_models()
        return run_detect(args)
    except CLIError as err:
        print(f"fasterrcnn: error: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        print("fasterrcnn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a command that stopped reading
        sys.stderr.close()
        return 0


def run_models() -> int:
    for name in list_models():
        preset = get_preset(name)
        weights = preset.weights
        published = f"{weights.file_name} (COCO mAP {weights.coco_map})" if weights else "-"
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{default}\n    {preset.description}; {preset.era}; {published}")
    return 0


def load_model(name: str, weights: str | None, device: str):
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: CUDA is not available here")
    try:
        if weights is not None:
            return create_model(name, weights=weights, device=device)
        return create_model(name, pretrained=True, device=device)
    except (UnknownModelError, CheckpointError) as err:
        raise CLIError(str(err)) from None
    except DownloadError as err:
        raise CLIError(
            f"no weights for {name}: {err}; download the file elsewhere and pass --weights PATH",
            status=1,
        ) from None


def run_detect(args: argparse.Namespace) -> int:
    paths = list_images(args.sources)
    if not paths:
        raise CLIError("no images found in " + " ".join(args.sources))
    model = load_model(args.model, args.weights, args.device)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"--out {out}: cannot create the directory ({err.strerror})") from None

    failed = detections = 0
    used_names: set[str] = set()
    start = time.perf_counter()
    progress = tqdm(paths, unit="img", disable=len(paths) < 2, file=sys.stderr)
    for path in progress:
        try:
            image = read_image(path)
        except ImageError as err:
            failed += 1
            progress.write(f"fasterrcnn: skipped: {err}", file=sys.stderr)
            continue
        result = predict(model, image, score_threshold=args.score_threshold)
        result.source = str(path)
        detections += len(result)
        stem = _unique_stem(path.stem, used_names)
        try:
            if not cv2.imwrite(str(out / f"{stem}.jpg"), draw_detections(image, result)):
                raise OSError(f"cannot write {out / stem}.jpg")
            (out / f"{stem}.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        except OSError as err:
            raise CLIError(f"--out {out}: {err}") from None
    done = len(paths) - failed
    per_image = (time.perf_counter() - start) / max(done, 1)
    summary = (
        f"{done} image(s), {detections} detection(s) written to {out}/ ({per_image:.2f} s/image)"
    )
    if failed:
        summary += f"; {failed} failed"
    print(summary)
    return 1 if failed else 0


def _unique_stem(stem: str, used: set[str]) -> str:
    candidate, n = stem, 1
    while candidate in used:
        candidate, n = f"{stem}_{n}", n + 1
    used.add(candidate)
    return candidate


if __name__ == "__main__":
    sys.exit(main())
