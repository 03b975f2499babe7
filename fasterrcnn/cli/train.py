"""``fasterrcnn train``: train or fine-tune a model on a COCO-format dataset."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fasterrcnn.cli.common import CLIError, model_name, non_negative, positive, start_processes
from fasterrcnn.cli.dataset_options import add_dataset_options
from fasterrcnn.data.dataset_files import EVAL_SPLIT, FORMATS, TRAIN_SPLIT, names_its_images
from fasterrcnn.data.images import ImageError
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.evaluation.coco_metrics import STAT_NAMES
from fasterrcnn.zoo import CheckpointError, DownloadError, UnknownModelError
from fasterrcnn.zoo.presets import DEFAULT_MODEL

logger = logging.getLogger("fasterrcnn")


def add_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train or fine-tune a model on a COCO, Pascal VOC or YOLO dataset",
        description="Train a model (from a preset's weights, a checkpoint, an ImageNet body or "
        "from scratch) on a dataset in COCO, Pascal VOC or YOLO format; under torchrun with "
        "DDP. Writes checkpoints, metrics.jsonl, model_best.safetensors (with an evaluation "
        "set) and model_final.safetensors into --output.",
    )
    add_dataset_options(train, default_split=TRAIN_SPLIT)
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
        "--batch-size", type=positive, default=2, metavar="B", help="images per process (2)"
    )
    train.add_argument("--schedule", choices=("1x", "2x", "3x"), default="1x", help="(1x)")
    train.add_argument(
        "--max-iter", type=positive, metavar="N", help="iterations (else the schedule's)"
    )
    train.add_argument("--lr", type=float, help="base learning rate (default 0.02 x batch / 16)")
    train.add_argument(
        "--short-side", type=positive, nargs="+", metavar="S",
        help="short sides to draw from (default 640 672 704 736 768 800)",
    )  # fmt: skip
    train.add_argument("--max-side", type=positive, default=1333, metavar="M", help="(1333)")
    train.add_argument(
        "--eval-annotations",
        metavar="PATH",
        help="evaluation set, in any format (as --annotations)",
    )
    train.add_argument("--eval-images", metavar="DIR", help="its images (as --images)")
    train.add_argument("--eval-format", choices=FORMATS, help="its format (default: from the path)")
    train.add_argument(
        "--eval-split", metavar="NAME", help=f"its split (default {EVAL_SPLIT}, as eval's)"
    )
    train.add_argument(
        "--eval-period", type=non_negative, default=0, metavar="N",
        help="evaluate every N iterations (0: at the end only)",
    )  # fmt: skip
    train.add_argument(
        "--checkpoint-period", type=positive, default=5000, metavar="N", help="(5000)"
    )
    train.add_argument("--log-period", type=positive, default=20, metavar="N", help="(20)")
    train.add_argument(
        "--drop-empty", action="store_true",
        help="drop the images without a usable box (default: train on them as background)",
    )  # fmt: skip
    train.add_argument(
        "--use-difficult", action="store_true",
        help="train on crowd (VOC difficult) boxes like the others (default: left out)",
    )  # fmt: skip
    train.add_argument(
        "--repeat-threshold", type=_positive_float, metavar="T",
        help="repeat the images of classes in fewer than a fraction T of the images (LVIS)",
    )  # fmt: skip
    train.add_argument(
        "--best-metric", choices=STAT_NAMES, metavar="KEY",
        help="COCO metric of model_best.safetensors and --patience (AP; AP50, APs, AR100...)",
    )  # fmt: skip
    train.add_argument(
        "--patience", type=positive, metavar="N",
        help="stop after N evaluations in a row without a better --best-metric",
    )  # fmt: skip
    train.add_argument("--resume", action="store_true", help="continue the run in --output")
    train.add_argument(
        "--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
        help="autocast precision (fp16: CUDA only, with loss scaling)",
    )  # fmt: skip
    train.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the gradient norm")
    train.add_argument("--seed", type=int, default=0, help="(0)")
    train.add_argument("--workers", type=non_negative, default=2, help="data loading processes (2)")
    train.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    train.set_defaults(run=run)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {text}")
    return value


def run(args: argparse.Namespace) -> int:
    # Imported here: the other commands start faster without the training modules.
    from fasterrcnn.training import TrainingError, TrainOptions, prepare_training, train
    from fasterrcnn.training.options import check_output_folder

    logger.setLevel(logging.INFO)
    if args.images is None and not names_its_images(args.annotations, args.format):
        raise CLIError(f"{args.annotations}: give the folder of the training images, --images DIR")
    if args.eval_annotations is None and args.eval_images is not None:
        raise CLIError("--eval-images needs --eval-annotations")
    if (
        args.eval_annotations is not None
        and args.eval_images is None
        and not names_its_images(args.eval_annotations, args.eval_format)
    ):
        raise CLIError(f"{args.eval_annotations}: give its image folder, --eval-images DIR")
    if args.eval_annotations is None and (args.best_metric or args.patience):
        raise CLIError("--best-metric and --patience need an evaluation set, --eval-annotations")
    if args.precision == "fp16" and not args.device.startswith("cuda"):
        raise CLIError("--precision fp16 needs --device cuda (on CPU use bf16)")
    output = Path(args.output)
    try:
        check_output_folder(output)
    except TrainingError as err:
        raise CLIError(str(err)) from None
    _, device = start_processes(args.device)
    short_sides = tuple(args.short_side) if args.short_side else TrainOptions.short_sides
    name = model_name(args.model, args.weights)
    try:
        prepared = prepare_training(
            args.annotations, args.images, preset=name, weights=args.weights,
            pretrained=args.pretrained, body_weights=args.body_weights,
            short_sides=short_sides, max_side=args.max_side,
            eval_annotations=args.eval_annotations, eval_images=args.eval_images, device=device,
            drop_empty=args.drop_empty, use_crowd=args.use_difficult, format=args.format,
            split=args.split, classes=args.classes, eval_format=args.eval_format,
            eval_split=args.eval_split,
        )  # fmt: skip
    except (DatasetError, UnknownModelError, CheckpointError) as err:
        raise CLIError(str(err)) from None
    except DownloadError as err:
        raise CLIError(f"no weights for {name}: {err}; pass --weights PATH", status=1) from None
    options = TrainOptions(
        output=output, batch_size=args.batch_size, schedule=args.schedule,
        max_iter=args.max_iter, lr=args.lr, short_sides=short_sides, max_side=args.max_side,
        clip_grad_norm=args.clip_grad, precision=args.precision, workers=args.workers,
        seed=args.seed, log_period=args.log_period, checkpoint_period=args.checkpoint_period,
        eval_period=args.eval_period, resume=args.resume, drop_empty=args.drop_empty,
        use_crowd=args.use_difficult, repeat_threshold=args.repeat_threshold,
        best_metric=args.best_metric or "AP", patience=args.patience,
    )  # fmt: skip
    try:
        train(prepared.model, prepared.data, options, evaluation=prepared.evaluation, preset=name)
    except (TrainingError, CheckpointError, ImageError) as err:
        raise CLIError(str(err), status=1) from None
    return 0
