"""``--slice`` and its options, shared by ``detect``, ``eval`` and ``serve``."""

from __future__ import annotations

import argparse

from fasterrcnn.cli.common import CLIError
from fasterrcnn.inference.slicing import SliceOptions


def add_slice_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sliced inference (small objects in large images)")
    group.add_argument(
        "--slice", type=int, metavar="S",
        help="run each image larger than S x S pixels as overlapping S x S tiles (at least "
        "64, in pixels of the original image) plus the whole image, and merge the detections",
    )  # fmt: skip
    group.add_argument(
        "--slice-overlap", type=float, default=0.2, metavar="F",
        help="fraction of a tile shared with its neighbour, in [0, 0.9) (default 0.2)",
    )  # fmt: skip
    group.add_argument(
        "--slice-merge", choices=("nms", "nmm"), default="nms",
        help="how the tiles' boxes are merged: class-wise NMS, or non-maximum merging (the "
        "enclosing box of boxes overlapping by half the smaller one) (default nms)",
    )  # fmt: skip
    group.add_argument(
        "--no-whole-image", action="store_true",
        help="run the tiles only, not the whole image too",
    )  # fmt: skip


def slice_options(args: argparse.Namespace) -> SliceOptions | None:
    """The checked options of ``--slice`` (None without it), or a one-line error."""
    if args.slice is None:
        return None
    options = SliceOptions(
        args.slice, args.slice_overlap, whole_image=not args.no_whole_image,
        merge=args.slice_merge,
    )  # fmt: skip
    try:
        options.check()
    except ValueError as err:
        raise CLIError(f"--slice: {err}") from None
    return options
