"""``fasterrcnn data``: look at a dataset in any format (COCO, Pascal VOC, YOLO) and convert
it: ``data stats`` counts it, ``data show`` draws its ground truth, ``data convert`` writes it
in another format."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fasterrcnn.cli.common import CLIError, check_output, positive
from fasterrcnn.cli.dataset_options import add_dataset_options, open_dataset
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.dataset_files import TRAIN_SPLIT
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.dataset_tools.convert import WRITE_FORMATS, convert_dataset
from fasterrcnn.dataset_tools.show import show_dataset
from fasterrcnn.dataset_tools.stats import dataset_stats


def add_parser(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser(
        "data",
        help="dataset statistics, drawings of the ground truth, format conversion",
        description="Look at a dataset (a COCO instances .json, a Pascal VOC folder or a YOLO "
        "data.yaml) or convert it into another of these formats.",
    )
    tools = data.add_subparsers(dest="data_command", required=True, metavar="TOOL")
    stats = tools.add_parser(
        "stats",
        help="count images, boxes per class, box and image sizes",
        description="Print what the dataset holds: images with and without boxes, boxes and "
        "ignored regions per class, box sizes (COCO small/medium/large), image sizes, and "
        "what reading it repaired or dropped.",
    )
    add_dataset_options(stats, default_split=TRAIN_SPLIT)
    stats.add_argument("--plot", metavar="FILE.png", help="also draw the counts in a PNG figure "
                       "(needs matplotlib)")  # fmt: skip
    stats.add_argument("--json", metavar="FILE", help="also write the counts as JSON")
    stats.set_defaults(run=run_stats)

    show = tools.add_parser(
        "show",
        help="draw the ground truth onto the images, with contact sheets",
        description="Write every image with its boxes and class names drawn (ignored regions "
        "dashed and grey) into --out as <stem>.jpg, and contact sheets of thumbnails "
        "(sheet_001.png, ...) to check many images at a glance.",
    )
    add_dataset_options(show, default_split=TRAIN_SPLIT)
    show.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    show.add_argument("--max-images", type=positive, metavar="N", help="the first N images only")
    show.add_argument("--per-sheet", type=positive, default=16, metavar="N",
                      help="thumbnails per contact sheet (16)")  # fmt: skip
    show.set_defaults(run=run_show)

    convert = tools.add_parser(
        "convert",
        help="write the dataset in another format",
        description="Read the dataset in any format and write it at OUT as a COCO instances "
        "file, a Pascal VOC folder, a YOLO dataset folder or Label Studio pre-annotations. "
        "What the target format cannot hold is left out and counted.",
    )
    add_dataset_options(convert, default_split=TRAIN_SPLIT)
    convert.add_argument("--to", required=True, choices=WRITE_FORMATS, help="the format to write")
    convert.add_argument("--copy-images", action="store_true",
                         help="YOLO: copy the images instead of linking them")  # fmt: skip
    convert.add_argument("out", metavar="OUT", help="the file (COCO, Label Studio) or the "
                         "new folder (VOC, YOLO) to write")  # fmt: skip
    convert.set_defaults(run=run_convert)


def _open(args: argparse.Namespace) -> CocoDataset:
    if not Path(args.annotations).exists():
        raise CLIError(f"{args.annotations}: no such file or folder")
    try:
        return open_dataset(
            args.annotations, args.images, format=args.format, split=args.split,
            classes=args.classes, default_split=TRAIN_SPLIT,
        )  # fmt: skip
    except (DatasetError, OSError) as err:
        raise CLIError(str(err)) from None


def run_stats(args: argparse.Namespace) -> int:
    check_output(args.plot, "--plot")
    check_output(args.json, "--json")
    if args.plot is not None:
        from fasterrcnn.dataset_tools.stats_plot import check_plotting, plot_stats

        try:
            check_plotting()
        except ImportError as err:
            raise CLIError(f"--plot: {err}") from None
    stats = dataset_stats(_open(args))
    print(stats.table())
    try:
        if args.json is not None:
            Path(args.json).write_text(json.dumps(stats.to_dict(), indent=1) + "\n")
            print(f"wrote {args.json}")
        if args.plot is not None:
            plot_stats(stats, args.plot)
            print(f"wrote {args.plot}")
    except (OSError, ImportError) as err:
        raise CLIError(str(err)) from None
    return 0


def _skipped(line: str) -> None:
    print(f"fasterrcnn: {line}", file=sys.stderr)


def run_show(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: not a directory")
    dataset = _open(args)
    try:
        summary = show_dataset(
            dataset, out, max_images=args.max_images, per_sheet=args.per_sheet,
            on_skip=_skipped,
        )  # fmt: skip
    except (OSError, ValueError) as err:
        raise CLIError(str(err)) from None
    skipped = f", {len(summary.skipped)} skipped" if summary.skipped else ""
    print(f"{summary.drawn} image(s) drawn{skipped}, {len(summary.sheets)} contact sheet(s) "
          f"written to {out}")  # fmt: skip
    return 1 if summary.skipped else 0


def run_convert(args: argparse.Namespace) -> int:
    out = Path(args.out)
    dataset = _open(args)
    try:
        report = convert_dataset(
            dataset, args.to, out, split=args.split or TRAIN_SPLIT,
            copy_images=args.copy_images,
        )  # fmt: skip
    except (DatasetError, OSError, ValueError) as err:
        raise CLIError(str(err)) from None
    print(f"converted {dataset.source} ({dataset.report.format}, {len(dataset)} images) "
          f"to {args.to} at {out}")  # fmt: skip
    for line in report.lines():
        print(line)
    return 0
