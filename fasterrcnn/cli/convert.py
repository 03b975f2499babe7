"""``fasterrcnn convert``: any supported checkpoint as a native ``.safetensors`` file."""

from __future__ import annotations

import argparse
from pathlib import Path

from fasterrcnn.cli.common import CLIError, model_name
from fasterrcnn.zoo import CheckpointError, UnknownModelError
from fasterrcnn.zoo.catalog import format_size
from fasterrcnn.zoo.factory import convert_checkpoint
from fasterrcnn.zoo.presets import DEFAULT_MODEL


def add_parser(commands: argparse._SubParsersAction) -> None:
    convert = commands.add_parser(
        "convert",
        help="write any supported checkpoint as a native fasterrcnn .safetensors file",
        description="Convert a checkpoint (MegEngine .pkl, torchvision .pth, detectron2 .pkl, "
        "or a native file) into the native format: safetensors tensors plus the model's full "
        "configuration and class table, loadable without pickle and without --model.",
    )
    convert.add_argument("source", metavar="SRC", help="checkpoint to convert")
    convert.add_argument("destination", metavar="DST", help="the .safetensors file to write")
    convert.add_argument(
        "--model",
        metavar="NAME",
        help=f"the preset SRC was made for (default {DEFAULT_MODEL}; not needed for a native file)",
    )
    convert.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    source, destination = Path(args.source), Path(args.destination)
    if source.resolve() == destination.resolve():
        raise CLIError("convert: SRC and DST are the same file")
    name = model_name(args.model, args.source)
    try:
        convert_checkpoint(source, destination, name)
    except (UnknownModelError, CheckpointError) as err:
        raise CLIError(str(err)) from None
    except OSError as err:
        raise CLIError(f"convert: cannot write {destination} ({err})") from None
    size = destination.stat().st_size
    print(f"wrote {destination} ({name or 'its own model'}, {format_size(size)})")
    return 0
