"""``fasterrcnn serve``: the model behind HTTP, with a web page."""

from __future__ import annotations

import argparse
import importlib.util

from fasterrcnn.cli.backend_options import add_backend_option, detector_name, load_detector
from fasterrcnn.cli.common import CLIError, add_model_choice, non_negative, positive
from fasterrcnn.cli.slice_options import add_slice_options, slice_options


def add_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="an HTTP detection service with a web page (pip install 'fasterrcnn[serve]')",
        description="Serve the model over HTTP: POST /v1/detect (JSON or a drawn JPEG), "
        "GET /v1/models, GET /healthz, and a web page at /. Concurrent requests share batches; "
        "--slice sets the default of the requests' ?slice=S (0: off) and ?slice_overlap=F.",
    )
    add_model_choice(serve)
    add_backend_option(serve)
    serve.add_argument("--host", default="127.0.0.1", help="(default 127.0.0.1)")
    serve.add_argument("--port", type=non_negative, default=8000, help="(8000; 0: any free)")
    serve.add_argument(
        "--max-batch", type=positive, default=4, metavar="N", help="images per batch (4)"
    )
    serve.add_argument(
        "--max-wait-ms", type=float, default=10.0, metavar="T",
        help="how long a batch's first image waits for others (10)",
    )  # fmt: skip
    serve.add_argument(
        "--max-queue", type=positive, default=32, metavar="N",
        help="detect requests in progress at most; more are answered 503 (32)",
    )  # fmt: skip
    serve.add_argument(
        "--max-body-mb", type=float, default=20.0, metavar="MB", help="request size limit (20)"
    )
    serve.add_argument(
        "--max-pixels", type=positive, default=40_000_000, metavar="N",
        help="decoded pixels per image at most, checked before decoding (40000000)",
    )  # fmt: skip
    serve.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds per request (60)"
    )
    serve.add_argument(
        "--score-threshold", type=float, default=0.5, help="default of the requests' (0.5)"
    )
    add_slice_options(serve)  # the default of the requests that name no ?slice=
    serve.add_argument(
        "--max-tiles", type=positive, default=100, metavar="N",
        help="tiles per sliced image at most; a request cut into more is refused (100)",
    )  # fmt: skip
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "multipart")):
        raise CLIError("serve needs its extra: pip install 'fasterrcnn[serve]'")
    # Imported here: the other commands start faster without the web stack.
    from fasterrcnn.serving.app import ServeOptions
    from fasterrcnn.serving.server import listen, serve, url_of

    if args.max_wait_ms < 0 or args.max_body_mb <= 0 or args.timeout <= 0:
        raise CLIError("--max-wait-ms must be >= 0, --max-body-mb and --timeout > 0")
    if not 0 <= args.score_threshold <= 1:
        raise CLIError(f"--score-threshold must be between 0 and 1, not {args.score_threshold}")
    slicing = slice_options(args)
    try:
        sock = listen(args.host, args.port)
    except OSError as err:
        raise CLIError(f"cannot listen on {args.host}:{args.port} ({err.strerror})") from None
    model = load_detector(args, args.device)
    name = detector_name(args)
    options = ServeOptions(
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        max_body_bytes=round(args.max_body_mb * (1 << 20)), max_pixels=args.max_pixels,
        timeout_s=args.timeout, score_threshold=args.score_threshold, slicing=slicing,
        max_tiles=args.max_tiles,
    )  # fmt: skip
    print(f"serving {name} on {url_of(sock)} (Ctrl-C stops)", flush=True)
    serve(model, name, sock, options)
    return 0
