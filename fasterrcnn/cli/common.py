"""What the commands share: the one-line error, argument types and options, which model
``--model``/``--weights`` mean, joining a ``torchrun`` job, and log lines on stderr."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from fasterrcnn.distributed import DistributedContext, init_distributed, rank_device
from fasterrcnn.inference.detector import Detector
from fasterrcnn.modeling.precision import INFERENCE_PRECISIONS, PrecisionError, check_precision
from fasterrcnn.zoo import CheckpointError, DownloadError, UnknownModelError, create_model
from fasterrcnn.zoo.checkpoint_files import read_safetensors_metadata
from fasterrcnn.zoo.native import is_native
from fasterrcnn.zoo.presets import DEFAULT_MODEL

logger = logging.getLogger("fasterrcnn")


class CLIError(Exception):
    """A fatal problem, reported as one line with the given exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def add_model_choice(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--weights``, ``--device`` and ``--precision``."""
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="preset (default: the file's own model when --weights is a native fasterrcnn "
        f".safetensors checkpoint, else {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--weights", metavar="PATH", help="local checkpoint file (default: the preset's download)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument(
        "--precision",
        choices=INFERENCE_PRECISIONS,
        default="fp32",
        help="bf16: convolutions and linear layers in bfloat16, boxes and NMS in float32, "
        "where the device supports it (default fp32)",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """:func:`add_model_choice`, ``--batch-size`` and ``--workers``."""
    add_model_choice(parser)
    parser.add_argument(
        "--batch-size", type=positive, default=1, metavar="B", help="images per batch (1)"
    )
    parser.add_argument(
        "--workers", type=non_negative, default=0, metavar="W", help="image decoding processes (0)"
    )


def model_name(name: str | None, weights: str | None) -> str | None:
    """The preset ``--model`` means: itself when given; None (the file's own configuration)
    when ``--weights`` is a native checkpoint; otherwise the default preset. A safetensors file
    without fasterrcnn metadata names no model, so it needs ``--model``."""
    if name is not None:
        return name
    if weights is None:
        return DEFAULT_MODEL
    if is_native(weights):
        return None
    try:
        read_safetensors_metadata(weights)
    except CheckpointError:  # not a safetensors file (or a broken one: loading says so)
        return DEFAULT_MODEL
    raise CLIError(f"{weights}: has no fasterrcnn metadata; name the preset with --model")


def check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: CUDA is not available here")


def load_model(
    name: str | None, weights: str | None, device: str, precision: str = "fp32"
) -> Detector:
    """``--model``/``--weights`` as a model on ``device`` (see :func:`model_name`)."""
    check_device(device)
    try:
        check_precision(precision, device)  # before any download
    except PrecisionError as err:
        raise CLIError(f"--precision {precision}: {err}") from None
    name = model_name(name, weights)
    try:
        if weights is not None:
            return create_model(name, weights=weights, device=device, precision=precision)
        return create_model(
            name or DEFAULT_MODEL, pretrained=True, device=device, precision=precision
        )
    except (UnknownModelError, CheckpointError) as err:
        raise CLIError(str(err)) from None
    except DownloadError as err:
        raise CLIError(f"no weights for {name}: {err}, or pass --weights PATH", status=1) from None


def start_processes(device: str) -> tuple[DistributedContext, str]:
    """Join the ``torchrun`` job, if any: this process's context and device."""
    check_device(device)
    context = init_distributed(device)
    if not context.is_main:
        logger.setLevel(logging.ERROR)  # notes about the whole run come from rank 0 only
    return context, rank_device(device, context)


def check_output(path: str | None, option: str) -> None:
    """Fail before the work, not after it, when an output file cannot be written."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise CLIError(f"{option} {path}: is a directory")
    if not target.parent.is_dir():
        raise CLIError(f"{option} {path}: no such directory {target.parent}")


def print_above_progress(line: str) -> None:
    """``line`` on stderr, above any progress bar."""
    tqdm.write(line, file=sys.stderr)


class _StderrHandler(logging.Handler):
    """``fasterrcnn: message`` lines on the current stderr, above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        print_above_progress(f"fasterrcnn: {record.getMessage()}")


def log_to_stderr() -> None:
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.propagate = False
