"""``fasterrcnn export``: the model and its post-processing as one ONNX or TorchScript graph."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fasterrcnn.cli.common import CLIError, load_model
from fasterrcnn.zoo.catalog import format_size
from fasterrcnn.zoo.presets import DEFAULT_MODEL


def add_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="export a model as ONNX or TorchScript",
        description="Write the network and its post-processing as one graph (dynamic batch "
        "and image size) for onnxruntime, OpenVINO or TorchScript; run it with "
        "detect --backend.",
    )
    export.add_argument("out", metavar="OUT", help="file to write (.onnx or .pt)")
    export.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    export.add_argument("--model", metavar="NAME", help=f"preset (default {DEFAULT_MODEL})")
    export.add_argument(
        "--weights", metavar="PATH", help="local checkpoint file (default: the preset's download)"
    )
    export.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fasterrcnn.export.graph import export_model

    out = Path(args.out)
    if not out.parent.is_dir():
        raise CLIError(f"{out}: the folder {out.parent} does not exist")
    model = load_model(args.model, args.weights, "cpu")
    start = time.perf_counter()
    try:
        export_model(model, out, args.format)
    except ImportError as err:
        raise CLIError(f"export needs {err.name} (pip install 'fasterrcnn[export]')") from None
    except OSError as err:
        raise CLIError(f"{out}: cannot write it ({err.strerror or err})") from None
    seconds = time.perf_counter() - start
    print(f"wrote {out} ({args.format}, {format_size(out.stat().st_size)}, {seconds:.0f} s)")
    return 0
