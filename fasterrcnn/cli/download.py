"""``fasterrcnn download``: presets' published weights into the cache, ahead of time."""

from __future__ import annotations

import argparse
import sys

from fasterrcnn.cli.common import CLIError
from fasterrcnn.zoo import DownloadError, UnknownModelError, get_preset, list_models
from fasterrcnn.zoo.download import fetch_weights


def add_parser(commands: argparse._SubParsersAction) -> None:
    download = commands.add_parser(
        "download",
        help="fetch presets' published weights into the cache ahead of time",
        description="Download, verify and cache presets' published weight files (from "
        "$FASTERRCNN_MIRROR/<file name> when that is set).",
    )
    download.add_argument("names", nargs="*", metavar="NAME", help="presets to fetch")
    download.add_argument("--all", action="store_true", help="fetch every preset's file")
    download.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.all == bool(args.names):
        raise CLIError("download: name one or more presets, or --all")
    try:
        presets = [get_preset(name) for name in (list_models() if args.all else args.names)]
    except UnknownModelError as err:
        raise CLIError(str(err)) from None
    failed = 0
    for preset in presets:
        if preset.weights is None:
            continue
        try:
            print(f"{preset.name}: {fetch_weights(preset.weights)}", flush=True)
        except DownloadError as err:
            print(f"fasterrcnn: error: {preset.name}: {err}", file=sys.stderr, flush=True)
            failed += 1
    return 1 if failed else 0
