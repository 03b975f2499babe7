"""Command line: ``fasterrcnn detect``, ``eval``, ``train``, ``serve``, ``export``, ``models``,
``download``, ``convert`` and ``data``, one module each (``add_parser`` and ``run``).

Every expected failure (a bad image, a bad checkpoint, an unknown model, a bad annotation
file, no network) is one line on stderr and a non-zero exit status: 1 when some images failed
or no weights could be had, 2 for a bad command line, model, checkpoint or dataset.

Under ``torchrun --nproc-per-node N`` the images are sharded across the N processes (gloo on
CPU, NCCL on GPUs); rank 0 prints the summary and, for ``eval``, gathers and evaluates once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from fasterrcnn.cli import (
    convert,
    data,
    detect,
    download,
    evaluate,
    export,
    models,
    serve,
    train,
)
from fasterrcnn.cli.common import CLIError, log_to_stderr
from fasterrcnn.distributed import shutdown
from fasterrcnn.inference.memory import limit_kernel_cache, memory_policy

# In the order ``fasterrcnn --help`` lists them.
COMMANDS = (detect, evaluate, train, serve, export, models, download, convert, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fasterrcnn", description="Faster R-CNN (ResNet + FPN) object detection."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit_kernel_cache()  # before any convolution runs
    log_to_stderr()
    try:
        try:
            memory_policy()
        except ValueError as err:
            raise CLIError(str(err)) from None
        status: int = args.run(args)
        return status
    except CLIError as err:
        print(f"fasterrcnn: error: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        print("fasterrcnn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a command that stopped reading
        sys.stderr.close()
        return 0
    finally:
        shutdown()


def run() -> None:
    """The ``fasterrcnn`` program: :func:`main`, then a quick exit.

    Once every output is written and flushed, the process ends without the interpreter's
    finalisation, which tears down PyTorch's thousand modules one by one (0.4 s, a tenth of
    a one-image ``detect``). ``main`` itself returns normally, for callers in Python.
    """
    status = main()
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # a reader that stopped; closed streams
        pass
    os._exit(status)
