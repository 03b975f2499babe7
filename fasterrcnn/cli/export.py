"""``fasterrcnn export``: the model and its post-processing as one ONNX or TorchScript graph,
float32 or (ONNX) int8 calibrated on the user's images."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fasterrcnn.cli.common import CLIError, load_model
from fasterrcnn.export.quantize import (
    DEFAULT_CALIBRATION_SIZE,
    Calibration,
    CalibrationError,
    calibration_images,
)
from fasterrcnn.inference.detector import Detector
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
    export.add_argument(
        "--precision", choices=("fp32", "int8"), default="fp32",
        help="fp32, or int8 (ONNX only): post-training quantization calibrated on "
        "--calibration-images, for onnxruntime and openvino (default fp32)",
    )  # fmt: skip
    export.add_argument(
        "--calibration-images", metavar="DIR",
        help="int8: a folder of images like those the model will see (not the ones it is "
        "evaluated on)",
    )  # fmt: skip
    export.add_argument(
        "--calibration-size", type=int, default=DEFAULT_CALIBRATION_SIZE, metavar="N",
        help=f"int8: calibrate on the first N readable images ({DEFAULT_CALIBRATION_SIZE})",
    )  # fmt: skip
    export.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fasterrcnn.export.graph import export_model

    out = Path(args.out)
    if not out.parent.is_dir():
        raise CLIError(f"{out}: the folder {out.parent} does not exist")
    calibration = _calibration(args)
    model = load_model(args.model, args.weights, "cpu")
    start = time.perf_counter()
    try:
        if calibration is None:
            export_model(model, out, args.format)
        else:
            _export_int8(model, out, calibration)
    except ImportError as err:
        if calibration is not None and err.name == "nncf":
            raise CLIError(str(err)) from None
        raise CLIError(f"export needs {err.name} (pip install 'fasterrcnn[export]')") from None
    except OSError as err:
        raise CLIError(f"{out}: cannot write it ({err.strerror or err})") from None
    seconds = time.perf_counter() - start
    kind = args.format if calibration is None else f"{args.format}, int8"
    print(f"wrote {out} ({kind}, {format_size(out.stat().st_size)}, {seconds:.0f} s)")
    return 0


def _calibration(args: argparse.Namespace) -> Calibration | None:
    """The calibration images of an int8 export (checked before the model loads), else None."""
    if args.precision == "fp32":
        if args.calibration_images is not None:
            raise CLIError("--calibration-images calibrates an int8 export: add --precision int8")
        return None
    if args.format != "onnx":
        raise CLIError(
            f"--precision int8 exports ONNX (for onnxruntime and openvino), not {args.format}"
        )
    if args.calibration_images is None:
        raise CLIError("--precision int8 needs --calibration-images DIR (images like those "
                       "the model will see)")  # fmt: skip
    try:
        calibration = calibration_images(args.calibration_images, args.calibration_size)
    except CalibrationError as err:
        raise CLIError(str(err)) from None
    for problem in calibration.unreadable:
        print(f"fasterrcnn: skipped: {problem}", file=sys.stderr)
    if len(calibration.paths) < calibration.asked:
        print(f"fasterrcnn: warning: calibrating on {len(calibration.paths)} image(s), fewer than "
              f"the {calibration.asked} asked (--calibration-size): all the readable images of "
              f"{args.calibration_images}", file=sys.stderr)  # fmt: skip
    return calibration


def _export_int8(model: Detector, out: Path, calibration: Calibration) -> None:
    from fasterrcnn.export.quantize import export_int8

    print(f"calibrating on {len(calibration.paths)} image(s)", file=sys.stderr)
    summary = export_int8(model, out, calibration)
    print(f"{summary.quantizers} int8 quantizers; {summary.float_nodes} nodes kept in float "
          "(proposals, RoIAlign, box decoding, NMS)", file=sys.stderr)  # fmt: skip
