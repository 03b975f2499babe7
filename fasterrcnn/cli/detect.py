"""``fasterrcnn detect``: a drawn copy and a JSON file per image into ``--out``; per video,
stream or camera, a JSON line per frame and the drawn video."""

from __future__ import annotations

import argparse
from pathlib import Path

from fasterrcnn.cli.backend_options import add_backend_option, load_detector
from fasterrcnn.cli.common import CLIError, add_model_options, print_above_progress, start_processes
from fasterrcnn.cli.slice_options import add_slice_options, slice_options
from fasterrcnn.cli.video_options import (
    add_video_options,
    check_video_options,
    detect_videos,
)
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.data.sources import list_sources, source_kind
from fasterrcnn.inference.folder_output import detect_into_folder
from fasterrcnn.inference.label_output import LABEL_FORMATS, LABEL_OUTPUTS
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.inference.slicing import SliceOptions


def add_parser(commands: argparse._SubParsersAction) -> None:
    detect = commands.add_parser(
        "detect",
        help="detect objects in images, videos and streams",
        description="Detect objects; write a drawn copy and a JSON file per image into --out, "
        "and NAME.jsonl (a line per frame) and NAME.mp4 (drawn) per video, stream or camera.",
    )
    detect.add_argument(
        "sources", nargs="*",
        help="image and video files, directories, glob patterns, stream URLs (rtsp://, "
        "rtmp://, http(s)://, ...)",
    )  # fmt: skip
    add_model_options(detect)
    detect.add_argument("--out", default="out", help="output directory (default: out)")
    detect.add_argument("--score-threshold", type=float, default=0.5, help="(default 0.5)")
    detect.add_argument("--no-draw", action="store_true", help="write the JSON files only")
    outputs = ", ".join(
        f"{fmt}: {name}{'' if '.' in name else '/'}" for fmt, name in LABEL_OUTPUTS.items()
    )
    detect.add_argument(
        "--save-labels",
        action="append",
        choices=LABEL_FORMATS,
        default=[],
        metavar="FORMAT",
        help="also write the detections (after --score-threshold) of the images read as a "
        f"dataset in --out, replacing an earlier run's (repeatable): {outputs}. VOC: an XML "
        "per image and classes.txt; YOLO: data.yaml, labels/train/ and images/train/ linking "
        "to the images; Label Studio: pre-annotations with the scores",
    )
    add_backend_option(detect)
    add_slice_options(detect)
    add_video_options(detect)
    detect.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    slicing = slice_options(args)
    check_video_options(args)
    sources = list_sources(args.sources)
    if not sources and not args.camera:
        raise CLIError("give image or video files, directories, stream URLs or --camera N")
    images = [s for s in sources if source_kind(s) == "image"]
    videos: list[Path | str | int] = [s for s in sources if source_kind(s) != "image"]
    videos += args.camera
    context, device = start_processes(args.device)
    model = load_detector(args, device)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"--out {out}: cannot create the directory ({err.strerror})") from None
    failed = _detect_images(model, [Path(p) for p in images], out, args, slicing, context.is_main)
    if videos and context.is_main:  # videos and streams run in the main process
        failed |= detect_videos(model, videos, out, args)
    return 1 if failed else 0


def _detect_images(
    model: BatchDetector,
    paths: list[Path],
    out: Path,
    args: argparse.Namespace,
    slicing: SliceOptions | None,
    is_main: bool,
) -> bool:
    """Detect in the images and print the summary; whether any failed."""
    if not paths:
        return False
    try:
        summary = detect_into_folder(
            model, paths, out, batch_size=args.batch_size, workers=args.workers,
            score_threshold=args.score_threshold, draw=not args.no_draw,
            on_error=lambda err: print_above_progress(f"fasterrcnn: skipped: {err}"),
            save_labels=list(dict.fromkeys(args.save_labels)), slicing=slicing,
        )  # fmt: skip
    except OSError as err:
        raise CLIError(f"--out {out}: {err}") from None
    except DatasetError as err:
        raise CLIError(f"--save-labels: {err}") from None
    if is_main:
        line = (
            f"{summary.images} image(s), {summary.detections} detection(s) written to {out}/ "
            f"({summary.seconds_per_image:.2f} s/image)"
        )
        print(line + (f"; {summary.failed} failed" if summary.failed else ""))
        for path in summary.labels:
            print(f"labels written to {path}")
    return summary.failed > 0
