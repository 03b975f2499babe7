"""Command line: ``fasterrcnn detect``, ``eval``, ``train``, ``serve``, ``models``,
``download`` and ``convert``.

Every expected failure (a bad image, a bad checkpoint, an unknown model, a bad annotation
file, no network) is one line on stderr and a non-zero exit status: 1 when some images failed
or no weights could be had, 2 for a bad command line, model, checkpoint or dataset.

Under ``torchrun --nproc-per-node N`` the images are sharded across the N processes (gloo on
CPU, NCCL on GPUs); rank 0 prints the summary and, for ``eval``, gathers and evaluates once.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from fasterrcnn.data.coco import CocoDataset, DatasetError
from fasterrcnn.data.images import ImageError, list_images
from fasterrcnn.engine.coco_evaluator import CocoMetrics, evaluate_results, load_results
from fasterrcnn.engine.detections import Detections
from fasterrcnn.engine.detector import Detector
from fasterrcnn.engine.distributed import (
    DistributedContext,
    broadcast_from_main,
    gather_to_main,
    init_distributed,
    rank_device,
    shutdown,
)
from fasterrcnn.engine.evaluate import class_mapping, detect_dataset, evaluate_found, select_images
from fasterrcnn.engine.inference import run_inference
from fasterrcnn.engine.memory import limit_kernel_cache, memory_policy
from fasterrcnn.engine.precision import PrecisionError, check_precision
from fasterrcnn.engine.runtime import BACKENDS, ExportedModel, RuntimeLoadError
from fasterrcnn.engine.visualize import draw_detections
from fasterrcnn.zoo import (
    CheckpointError,
    DownloadError,
    UnknownModelError,
    create_model,
    get_preset,
    is_native,
    list_models,
)
from fasterrcnn.zoo.catalog import catalog, format_size
from fasterrcnn.zoo.checkpoints import read_safetensors_metadata
from fasterrcnn.zoo.download import cache_dir, fetch_weights, file_digests
from fasterrcnn.zoo.native import save_native
from fasterrcnn.zoo.presets import DEFAULT_MODEL

logger = logging.getLogger("fasterrcnn")


class CLIError(Exception):
    """A fatal problem, reported as one line with the given exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    _add_model_choice(parser)
    parser.add_argument(
        "--batch-size", type=_positive, default=1, metavar="B", help="images per batch (1)"
    )
    parser.add_argument(
        "--workers", type=_non_negative, default=0, metavar="W", help="image decoding processes (0)"
    )


def _add_model_choice(parser: argparse.ArgumentParser) -> None:
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
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: convolutions and linear layers in bfloat16, boxes and NMS in float32, "
        "where the device supports it (default fp32)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fasterrcnn", description="Faster R-CNN (ResNet + FPN) object detection."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    detect = commands.add_parser(
        "detect",
        help="detect objects in images",
        description="Detect objects; write a drawn copy and a JSON file per image into --out.",
    )
    detect.add_argument("sources", nargs="+", help="image files, directories or glob patterns")
    _add_model_options(detect)
    detect.add_argument("--out", default="out", help="output directory (default: out)")
    detect.add_argument("--score-threshold", type=float, default=0.5, help="(default 0.5)")
    detect.add_argument("--no-draw", action="store_true", help="write the JSON files only")
    detect.add_argument(
        "--backend",
        choices=("pytorch", *BACKENDS),
        default="pytorch",
        help="what runs the network: pytorch, or an exported file given as --weights "
        "(fasterrcnn export) run by onnxruntime, openvino or torchscript (default pytorch)",
    )

    evaluate = commands.add_parser(
        "eval",
        help="COCO bbox evaluation of a model, or of a results file",
        description="Run a model on a COCO-format dataset and evaluate it with pycocotools; "
        "without --images, evaluate an existing --results file.",
    )
    evaluate.add_argument(
        "--annotations", required=True, metavar="FILE", help="COCO instances JSON"
    )
    evaluate.add_argument(
        "--images", metavar="DIR", help="folder of the images the annotation file lists"
    )
    evaluate.add_argument(
        "--results",
        metavar="FILE",
        help="COCO results JSON to write (with --images) or to evaluate (without)",
    )
    evaluate.add_argument(
        "--metrics", metavar="FILE", help="write the metrics as JSON to this file"
    )
    evaluate.add_argument(
        "--max-images", type=int, metavar="N", help="evaluate the first N images only"
    )
    evaluate.add_argument(
        "--allow-missing",
        action="store_true",
        help="evaluate the images present when some listed ones are not in --images",
    )
    evaluate.add_argument(
        "--evaluator",
        choices=("pycocotools", "faster-coco-eval"),
        default="pycocotools",
        help="COCO evaluation implementation (default pycocotools)",
    )
    _add_model_options(evaluate)

    _add_train_parser(commands)
    _add_serve_parser(commands)
    _add_export_parser(commands)
    _add_zoo_parsers(commands)
    return parser


def _add_zoo_parsers(commands: argparse._SubParsersAction) -> None:
    commands.add_parser(
        "models",
        help="list the presets: source, published mAP, file, size, cached or not",
        description="List the presets and their published weight files. The cache folder is "
        "$FASTERRCNN_HOME (default ~/.cache/fasterrcnn).",
    )
    download = commands.add_parser(
        "download",
        help="fetch presets' published weights into the cache ahead of time",
        description="Download, verify and cache presets' published weight files (from "
        "$FASTERRCNN_MIRROR/<file name> when that is set).",
    )
    download.add_argument("names", nargs="*", metavar="NAME", help="presets to fetch")
    download.add_argument("--all", action="store_true", help="fetch every preset's file")
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


def _add_serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="an HTTP detection service with a web page (pip install 'fasterrcnn[serve]')",
        description="Serve the model over HTTP: POST /v1/detect (JSON or a drawn JPEG), "
        "GET /v1/models, GET /healthz, and a web page at /. Concurrent requests share batches.",
    )
    _add_model_choice(serve)
    serve.add_argument("--host", default="127.0.0.1", help="(default 127.0.0.1)")
    serve.add_argument("--port", type=_non_negative, default=8000, help="(8000; 0: any free)")
    serve.add_argument(
        "--max-batch", type=_positive, default=4, metavar="N", help="images per batch (4)"
    )
    serve.add_argument(
        "--max-wait-ms", type=float, default=10.0, metavar="T",
        help="how long a batch's first image waits for others (10)",
    )  # fmt: skip
    serve.add_argument(
        "--max-queue", type=_positive, default=32, metavar="N",
        help="detect requests in progress at most; more are answered 503 (32)",
    )  # fmt: skip
    serve.add_argument(
        "--max-body-mb", type=float, default=20.0, metavar="MB", help="request size limit (20)"
    )
    serve.add_argument(
        "--max-pixels", type=_positive, default=40_000_000, metavar="N",
        help="decoded pixels per image at most, checked before decoding (40000000)",
    )  # fmt: skip
    serve.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds per request (60)"
    )
    serve.add_argument(
        "--score-threshold", type=float, default=0.5, help="default of the requests' (0.5)"
    )


def _add_export_parser(commands: argparse._SubParsersAction) -> None:
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


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train or fine-tune a model on a COCO-format dataset",
        description="Train a model (from a preset's weights, a checkpoint, an ImageNet body or "
        "from scratch) on a COCO-format dataset; under torchrun with DDP. Writes checkpoints, "
        "metrics.jsonl and model_final.safetensors into --output.",
    )
    train.add_argument("--images", required=True, metavar="DIR", help="training images")
    train.add_argument("--annotations", required=True, metavar="FILE", help="instances JSON")
    train.add_argument("--model", metavar="NAME", help=f"preset (default {DEFAULT_MODEL})")
    start = train.add_mutually_exclusive_group()
    start.add_argument("--weights", metavar="PATH", help="detector checkpoint to start from")
    start.add_argument(
        "--pretrained", action="store_true", help="start from the preset's published weights"
    )
    train.add_argument(
        "--body-weights", metavar="PATH", help="ImageNet ResNet checkpoint for the body"
    )
    train.add_argument("--output", default="run", metavar="DIR", help="(default: run)")
    train.add_argument(
        "--batch-size", type=_positive, default=2, metavar="B", help="images per process (2)"
    )
    train.add_argument("--schedule", choices=("1x", "2x", "3x"), default="1x", help="(1x)")
    train.add_argument(
        "--max-iter", type=_positive, metavar="N", help="iterations (else the schedule's)"
    )
    train.add_argument("--lr", type=float, help="base learning rate (default 0.02 x batch / 16)")
    train.add_argument(
        "--short-side", type=_positive, nargs="+", metavar="S",
        help="short sides to draw from (default 640 672 704 736 768 800)",
    )  # fmt: skip
    train.add_argument("--max-side", type=_positive, default=1333, metavar="M", help="(1333)")
    train.add_argument("--eval-images", metavar="DIR", help="evaluation images")
    train.add_argument("--eval-annotations", metavar="FILE", help="evaluation instances JSON")
    train.add_argument(
        "--eval-period", type=_non_negative, default=0, metavar="N",
        help="evaluate every N iterations (0: at the end only)",
    )  # fmt: skip
    train.add_argument(
        "--checkpoint-period", type=_positive, default=5000, metavar="N", help="(5000)"
    )
    train.add_argument("--log-period", type=_positive, default=20, metavar="N", help="(20)")
    train.add_argument("--resume", action="store_true", help="continue the run in --output")
    train.add_argument(
        "--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
        help="autocast precision (fp16: CUDA only, with loss scaling)",
    )  # fmt: skip
    train.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the gradient norm")
    train.add_argument("--seed", type=int, default=0, help="(0)")
    train.add_argument(
        "--workers", type=_non_negative, default=2, help="data loading processes (2)"
    )
    train.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit_kernel_cache()  # before any convolution runs
    _log_to_stderr()
    try:
        try:
            memory_policy()
        except ValueError as err:
            raise CLIError(str(err)) from None
        if args.command == "models":
            return run_models()
        if args.command == "download":
            return run_download(args)
        if args.command == "convert":
            return run_convert(args)
        if args.command == "eval":
            return run_eval(args)
        if args.command == "train":
            return run_train(args)
        if args.command == "serve":
            return run_serve(args)
        if args.command == "export":
            return run_export(args)
        return run_detect(args)
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


class _StderrHandler(logging.Handler):
    """``fasterrcnn: message`` lines on the current stderr, above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(f"fasterrcnn: {record.getMessage()}", file=sys.stderr)


def _log_to_stderr() -> None:
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.propagate = False


def run_models() -> int:
    entries = catalog()
    rows = [("model", "source", "mAP", "file", "size", "cached")]
    for e in entries:
        rows.append((
            e.name + (" (default)" if e.default else ""),
            e.family,
            f"{e.coco_map:.1f}" if e.coco_map is not None else "-",
            e.file_name or "-",
            format_size(e.size) if e.cached else "~" + format_size(e.size),
            "yes" if e.cached else "no",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"cache: {cache_dir()} (set FASTERRCNN_HOME to move it; sizes with ~ are estimates)")
    return 0


def run_download(args: argparse.Namespace) -> int:
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


def run_convert(args: argparse.Namespace) -> int:
    source, destination = Path(args.source), Path(args.destination)
    if source.resolve() == destination.resolve():
        raise CLIError("convert: SRC and DST are the same file")
    name = model_name(args.model, args.source)
    try:
        model = create_model(name, weights=source)
        digest = file_digests(source)[0]
        save_native(
            destination,
            model,
            model.config,
            preset=name,
            metadata={"source_file": source.name, "source_sha256": digest},
        )
    except (UnknownModelError, CheckpointError) as err:
        raise CLIError(str(err)) from None
    except OSError as err:
        raise CLIError(f"convert: cannot write {destination} ({err})") from None
    size = destination.stat().st_size
    print(f"wrote {destination} ({name or 'its own model'}, {format_size(size)})")
    return 0


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


def load_model(
    name: str | None, weights: str | None, device: str, precision: str = "fp32"
) -> Detector:
    """``--model``/``--weights`` as a model on ``device`` (see :func:`model_name`)."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: CUDA is not available here")
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


def load_exported(args: argparse.Namespace) -> ExportedModel:
    """``--backend`` with ``--weights``: the exported file, on the CPU."""
    backend = args.backend
    if args.weights is None:
        raise CLIError(f"--backend {backend} runs an exported file: pass it as --weights PATH")
    if args.device != "cpu" or args.precision != "fp32":
        raise CLIError(f"--backend {backend} runs float32 on the CPU (--device cpu)")
    try:
        return ExportedModel(args.weights, backend)
    except RuntimeLoadError as err:
        raise CLIError(str(err)) from None


def run_export(args: argparse.Namespace) -> int:
    from fasterrcnn.engine.export import export

    out = Path(args.out)
    if not out.parent.is_dir():
        raise CLIError(f"{out}: the folder {out.parent} does not exist")
    model = load_model(args.model, args.weights, "cpu")
    start = time.perf_counter()
    try:
        export(model, out, args.format)
    except ImportError as err:
        raise CLIError(f"export needs {err.name} (pip install 'fasterrcnn[export]')") from None
    except OSError as err:
        raise CLIError(f"{out}: cannot write it ({err.strerror or err})") from None
    seconds = time.perf_counter() - start
    print(f"wrote {out} ({args.format}, {format_size(out.stat().st_size)}, {seconds:.0f} s)")
    return 0


def start_processes(device: str) -> tuple[DistributedContext, str]:
    """Join the ``torchrun`` job, if any: this process's context and device."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: CUDA is not available here")
    context = init_distributed(device)
    if not context.is_main:
        logger.setLevel(logging.ERROR)  # notes about the whole run come from rank 0 only
    return context, rank_device(device, context)


# --------------------------------------------------------------------------- detect


def run_detect(args: argparse.Namespace) -> int:
    paths = list_images(args.sources)
    if not paths:
        raise CLIError("no images found in " + " ".join(args.sources))
    context, device = start_processes(args.device)
    model: Detector | ExportedModel
    if args.backend == "pytorch":
        model = load_model(args.model, args.weights, device, args.precision)
    else:
        model = load_exported(args)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"--out {out}: cannot create the directory ({err.strerror})") from None

    stems = _unique_stems(paths)
    failed = done = detections = 0
    start = time.perf_counter()
    shard = range(context.rank, len(paths), context.world_size)
    progress = tqdm(
        total=len(shard), unit="img", file=sys.stderr, disable=len(shard) < 2 or not context.is_main
    )
    with progress:
        for result in run_inference(
            model,
            paths,
            batch_size=args.batch_size,
            workers=args.workers,
            score_threshold=args.score_threshold,
            keep_images=not args.no_draw,
            rank=context.rank,
            world_size=context.world_size,
        ):
            progress.update()
            if result.detections is None:
                failed += 1
                progress.write(f"fasterrcnn: skipped: {result.error}", file=sys.stderr)
                continue
            result.detections.source = str(paths[result.index])
            _write_outputs(out, stems[result.index], result.detections, result.image)
            done += 1
            detections += len(result.detections)
    elapsed = time.perf_counter() - start
    totals = gather_to_main((done, failed, detections, elapsed))
    if totals is not None:
        done, failed, detections = (sum(t[k] for t in totals) for k in range(3))
        per_image = max(t[3] for t in totals) / max(done, 1)
        summary = (
            f"{done} image(s), {detections} detection(s) written to {out}/ "
            f"({per_image:.2f} s/image)"
        )
        print(summary + (f"; {failed} failed" if failed else ""))
    return broadcast_from_main(1 if failed else 0)


def _write_outputs(out: Path, stem: str, detections: Detections, image: np.ndarray | None) -> None:
    try:
        if image is not None and not cv2.imwrite(
            str(out / f"{stem}.jpg"), draw_detections(image, detections)
        ):
            raise OSError(f"cannot write {out / stem}.jpg")
        (out / f"{stem}.json").write_text(json.dumps(detections.to_dict(), indent=1) + "\n")
    except OSError as err:
        raise CLIError(f"--out {out}: {err}") from None


def _unique_stems(paths: list[Path]) -> list[str]:
    """Output file stems, one per path: the file's stem, numbered when it repeats."""
    used: set[str] = set()
    stems = []
    for path in paths:
        candidate, n = path.stem, 1
        while candidate in used:
            candidate, n = f"{path.stem}_{n}", n + 1
        used.add(candidate)
        stems.append(candidate)
    return stems


# --------------------------------------------------------------------------- eval


def run_eval(args: argparse.Namespace) -> int:
    _check_output(args.metrics, "--metrics")
    if (
        args.evaluator == "faster-coco-eval"
        and importlib.util.find_spec("faster_coco_eval") is None
    ):
        raise CLIError(
            "--evaluator faster-coco-eval needs its package: pip install faster-coco-eval"
        )
    if args.images is None:
        if args.results is None:
            raise CLIError("give --images DIR to run a model, or --results FILE to evaluate")
        return _evaluate_results_file(args)
    if args.max_images is not None and args.max_images < 1:
        raise CLIError(f"--max-images must be at least 1, not {args.max_images}")
    _check_output(args.results, "--results")
    context, device = start_processes(args.device)
    try:
        dataset = CocoDataset.load(args.annotations, args.images)
        indices = select_images(dataset, args.max_images, args.allow_missing)
    except DatasetError as err:
        raise CLIError(str(err)) from None
    model = load_model(args.model, args.weights, device, args.precision)
    try:
        mapping = class_mapping(model, dataset)
    except DatasetError as err:
        raise CLIError(str(err)) from None
    if note := mapping.note():
        logger.warning("%s", note)
    start = time.perf_counter()
    found = detect_dataset(
        model, dataset, indices, mapping, batch_size=args.batch_size, workers=args.workers,
        progress=True,
    )  # fmt: skip
    status = 0
    if found is not None:
        seconds = time.perf_counter() - start
        print(f"inference: {len(indices)} images in {seconds:.1f} s "
              f"({len(indices) / seconds:.2f} images/s, {context.world_size} process(es))")  # fmt: skip
        try:
            start = time.perf_counter()
            metrics = evaluate_found(dataset, found, args.results, args.evaluator)
            _report(metrics, args.metrics, time.perf_counter() - start)
        except (DatasetError, OSError, ImportError) as err:
            raise CLIError(str(err)) from None
        status = 1 if found.failures else 0
    return broadcast_from_main(status)


def _check_output(path: str | None, option: str) -> None:
    """Fail before the work, not after it, when an output file cannot be written."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise CLIError(f"{option} {path}: is a directory")
    if not target.parent.is_dir():
        raise CLIError(f"{option} {path}: no such directory {target.parent}")


def _evaluate_results_file(args: argparse.Namespace) -> int:
    try:
        dataset = CocoDataset.load(args.annotations)
        results = load_results(args.results, dataset)
        start = time.perf_counter()
        metrics = evaluate_results(dataset, results, backend=args.evaluator)
        _report(metrics, args.metrics, time.perf_counter() - start)
    except (DatasetError, OSError, ImportError) as err:
        raise CLIError(str(err)) from None
    return 0


def _report(metrics: CocoMetrics, metrics_file: str | None, seconds: float) -> None:
    print(metrics.summary.rstrip())
    print("per-category AP:")
    print(metrics.table())
    print(
        f"evaluation: {metrics.num_images} images, {metrics.num_detections} detections "
        f"in {seconds:.2f} s"
    )
    if metrics_file is not None:
        Path(metrics_file).write_text(json.dumps(metrics.to_dict(), indent=1) + "\n")


# --------------------------------------------------------------------------- serve


def run_serve(args: argparse.Namespace) -> int:
    if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "multipart")):
        raise CLIError("serve needs its extra: pip install 'fasterrcnn[serve]'")
    # Imported here: the other commands start faster without the web stack.
    from fasterrcnn.engine.serve import ServeOptions, create_app, listen, make_server

    if args.max_wait_ms < 0 or args.max_body_mb <= 0 or args.timeout <= 0:
        raise CLIError("--max-wait-ms must be >= 0, --max-body-mb and --timeout > 0")
    if not 0 <= args.score_threshold <= 1:
        raise CLIError(f"--score-threshold must be between 0 and 1, not {args.score_threshold}")
    try:
        sock = listen(args.host, args.port)
    except OSError as err:
        raise CLIError(f"cannot listen on {args.host}:{args.port} ({err.strerror})") from None
    model = load_model(args.model, args.weights, args.device, args.precision)
    name = model_name(args.model, args.weights) or Path(args.weights).stem
    options = ServeOptions(
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        max_body_bytes=round(args.max_body_mb * (1 << 20)), max_pixels=args.max_pixels,
        timeout_s=args.timeout, score_threshold=args.score_threshold,
    )  # fmt: skip
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    print(f"serving {name} on http://{url_host}:{port}/ (Ctrl-C stops)", flush=True)
    make_server(create_app(model, name, options)).run(sockets=[sock])
    return 0


# --------------------------------------------------------------------------- train


def run_train(args: argparse.Namespace) -> int:
    # Imported here: the other commands start faster without the training modules.
    from fasterrcnn.data.train_dataset import TrainingDataset
    from fasterrcnn.engine.train import (
        EvalSet,
        TrainingError,
        TrainOptions,
        check_output_folder,
        train,
    )
    from fasterrcnn.engine.train_setup import prepare_training_model

    logger.setLevel(logging.INFO)
    if (args.eval_images is None) != (args.eval_annotations is None):
        raise CLIError("give --eval-images and --eval-annotations together")
    if args.precision == "fp16" and not args.device.startswith("cuda"):
        raise CLIError("--precision fp16 needs --device cuda (on CPU use bf16)")
    output = Path(args.output)
    try:
        check_output_folder(output)
    except TrainingError as err:
        raise CLIError(str(err)) from None
    _, device = start_processes(args.device)
    short_sides = tuple(args.short_side) if args.short_side else TrainOptions.short_sides
    try:
        coco = CocoDataset.load(args.annotations, args.images, strict_boxes=False)
        missing = coco.missing_images()
        if missing:
            raise DatasetError(
                f"{len(missing)} of the {len(coco)} training images are not in {args.images} "
                f"(first: {coco.images[missing[0]].file_name})"
            )
        evaluation = None
        if args.eval_images is not None:
            eval_coco = CocoDataset.load(args.eval_annotations, args.eval_images)
            evaluation = EvalSet(eval_coco, select_images(eval_coco))
    except DatasetError as err:
        raise CLIError(str(err)) from None
    name = model_name(args.model, args.weights)
    try:
        start = prepare_training_model(
            name, coco.classes, weights=args.weights, pretrained=args.pretrained,
            body_weights=args.body_weights, short_sides=short_sides, max_side=args.max_side,
        )  # fmt: skip
    except (UnknownModelError, CheckpointError) as err:
        raise CLIError(str(err)) from None
    except DownloadError as err:
        raise CLIError(f"no weights for {name}: {err}; pass --weights PATH", status=1) from None
    for note in start.notes:
        logger.info("%s", note)
    model = start.model.to(device)
    try:
        data = TrainingDataset(
            coco, model.config.classes, model.config.input, short_sides, args.max_side
        )
        if evaluation is not None:
            class_mapping(model, evaluation.dataset)
    except DatasetError as err:
        raise CLIError(str(err)) from None
    logger.info("%s", data.summary())
    options = TrainOptions(
        output=output, batch_size=args.batch_size, schedule=args.schedule,
        max_iter=args.max_iter, lr=args.lr, short_sides=short_sides, max_side=args.max_side,
        clip_grad_norm=args.clip_grad, precision=args.precision, workers=args.workers,
        seed=args.seed, log_period=args.log_period, checkpoint_period=args.checkpoint_period,
        eval_period=args.eval_period, resume=args.resume,
    )  # fmt: skip
    try:
        train(model, data, options, evaluation=evaluation, preset=name)
    except (TrainingError, CheckpointError, ImageError) as err:
        raise CLIError(str(err), status=1) from None
    return 0


if __name__ == "__main__":
    run()
