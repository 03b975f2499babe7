"""``--backend``, which ``detect``, ``eval`` and ``serve`` share: what runs the network, the
PyTorch model (``--model``/``--weights``) or an exported file (``--weights``) run by
onnxruntime, OpenVINO or TorchScript, which carries its own configuration and class table."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fasterrcnn.cli.common import CLIError, load_model, model_name
from fasterrcnn.export.runtimes import BACKENDS, ExportedModel, RuntimeLoadError
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.modeling.precision import PrecisionError, check_precision

logger = logging.getLogger("fasterrcnn")


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--backend`` (after :func:`~fasterrcnn.cli.common.add_model_choice`'s options)."""
    parser.add_argument(
        "--backend",
        choices=("pytorch", *BACKENDS),
        default="pytorch",
        help="what runs the network: pytorch, or an exported file given as --weights "
        "(fasterrcnn export) run by onnxruntime, openvino or torchscript on the CPU; the file "
        "carries its model and classes, so --model is not needed (default pytorch)",
    )


def load_detector(args: argparse.Namespace, device: str) -> BatchDetector:
    """The model ``--backend`` runs: the PyTorch model of ``--model``/``--weights`` on
    ``device``, or the exported file ``--weights``."""
    if args.backend == "pytorch":
        return load_model(args.model, args.weights, device, args.precision)
    return load_exported_file(args)


def load_exported_file(args: argparse.Namespace) -> ExportedModel:
    """``--backend`` with ``--weights``: the exported file, on the CPU, in float32 (bfloat16
    with ``--backend openvino --precision bf16`` where the CPU has it)."""
    backend, precision = args.backend, args.precision
    if args.weights is None:
        raise CLIError(f"--backend {backend} runs an exported file: pass it as --weights PATH")
    if args.device != "cpu":
        raise CLIError(f"--backend {backend} runs on the CPU (--device cpu), not {args.device}")
    if precision != "fp32" and backend != "openvino":
        raise CLIError(f"--backend {backend} runs fp32 only, not --precision {precision}")
    try:
        check_precision(precision, "cpu")
    except PrecisionError as err:
        raise CLIError(f"--precision {precision}: {err}") from None
    try:
        model = ExportedModel(args.weights, backend, precision)
    except RuntimeLoadError as err:
        raise CLIError(str(err)) from None
    if args.model is not None:
        logger.warning("--model %s is not used: %s carries its own model", args.model, args.weights)
    return model


def detector_name(args: argparse.Namespace) -> str:
    """The name a run reports: the preset, or the weights file's stem."""
    name = None if args.backend != "pytorch" else model_name(args.model, args.weights)
    return name or Path(args.weights).stem
