"""The model a training run starts from: its class table, its normalization and its weights.

- Training data whose categories are the model's own (by id, or by name: a YOLO or VOC
  dataset of the model's class names) keeps the model's class table; any other categories
  make the table of the dataset, with a freshly initialized box
  predictor for it and every other weight loaded (fine-tuning).
- A body without pretrained weights (neither a detector checkpoint nor an ImageNet one) has no
  statistics for its frozen batch norm, which would then be an identity: it trains with group
  norm instead.
- The test-time input size becomes the largest training short side and the training long side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from fasterrcnn.config import ClassTable, ModelConfig
from fasterrcnn.data.class_mapping import ClassMapping
from fasterrcnn.data.dataset_files import TRAIN_SPLIT, load_dataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.data.train_dataset import TrainingDataset
from fasterrcnn.evaluation.dataset_run import EvalSet, class_mapping, load_eval_set
from fasterrcnn.inference.detector import Detector
from fasterrcnn.training.options import TrainOptions
from fasterrcnn.zoo.body_weights import load_body_weights
from fasterrcnn.zoo.factory import create_model, get_preset
from fasterrcnn.zoo.presets import DEFAULT_MODEL

logger = logging.getLogger("fasterrcnn")

UNUSED_CLASS = "N/A"  # slots of a class table that no category uses (torchvision's 91-way head)


@dataclass
class TrainingStart:
    """The model to train and one log line per decision taken about it."""

    model: Detector
    notes: list[str] = field(default_factory=list)


def same_categories(model_classes: ClassTable, dataset_classes: ClassTable) -> bool:
    """Whether the dataset's categories are exactly the model's classes (the model's unused
    "N/A" slots aside), matched as evaluation matches them: by id where the names agree, else
    by name (a YOLO or VOC dataset of the model's class names has ids of its own)."""
    mapping = ClassMapping.between(model_classes, dataset_classes)
    used = [
        i
        for i, n in zip(model_classes.category_ids, model_classes.names, strict=True)
        if n != UNUSED_CLASS
    ]
    matched = {mapping.to_dataset[i] for i in used if i in mapping.to_dataset}
    return not mapping.unmatched and len(matched) == len(used) == len(dataset_classes)


def with_classes(config: ModelConfig, classes: ClassTable) -> ModelConfig:
    return replace(
        config, classes=classes, box_head=replace(config.box_head, num_classes=len(classes))
    )


def prepare_training_model(
    name: str | None,
    dataset_classes: ClassTable,
    *,
    weights: str | Path | None = None,
    pretrained: bool = False,
    body_weights: str | Path | None = None,
    short_sides: tuple[int, ...] | None = None,
    max_side: int | None = None,
) -> TrainingStart:
    """The model a run trains, in train mode on the CPU (see the module docstring).

    ``name``: a preset (None: the default preset, or a native checkpoint's own model);
    ``weights``: a detector checkpoint to start from; ``pretrained``: the preset's published
    weights; ``body_weights``: an ImageNet checkpoint for the body.
    """
    notes: list[str] = []
    source: Detector | None = None
    if weights is not None or pretrained:
        source = create_model(name, weights=weights, pretrained=pretrained)
        config = source.config
    else:
        config = get_preset(name or DEFAULT_MODEL).config
    if short_sides is not None or max_side is not None:
        config = replace(
            config,
            input=replace(
                config.input,
                short_side=max(short_sides) if short_sides else config.input.short_side,
                max_side=max_side or config.input.max_side,
            ),
        )
    if not same_categories(config.classes, dataset_classes):
        notes.append(
            f"the training data's {len(dataset_classes)} categories are not the model's "
            f"{len(config.classes)} classes: the class table comes from the annotation file"
        )
        config = with_classes(config, dataset_classes)
    if source is None and body_weights is None and config.body.norm == "frozen_bn":
        notes.append(
            "no pretrained weights: the body trains from scratch with group norm (a frozen "
            "batch norm without pretrained statistics would be an identity)"
        )
        config = replace(config, body=replace(config.body, norm="gn", freeze_at=0))
    model = Detector(config)
    if source is not None:
        notes += _load_matching(model, source)
    if body_weights is not None:
        report = load_body_weights(model.backbone.body, body_weights)
        notes.append(report.line())
    return TrainingStart(model.train(), notes)


def _load_matching(model: Detector, source: Detector) -> list[str]:
    """Copy every tensor of ``source`` whose name and shape ``model`` shares; the others
    (the box predictor of another class table) keep their fresh initialization."""
    target = model.state_dict()
    loaded = {
        k: v for k, v in source.state_dict().items() if k in target and v.shape == target[k].shape
    }
    model.load_state_dict(loaded, strict=False)
    fresh = [k for k in target if k not in loaded and not k.endswith("num_batches_tracked")]
    if not fresh:
        return []
    return [
        f"re-initialized {len(fresh)} tensors (not in the checkpoint's model): {', '.join(fresh)}"
    ]


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@dataclass
class PreparedRun:
    """What :func:`~fasterrcnn.training.loop.train` takes: the model (on its device, in train
    mode), the training samples, the evaluation set if any, and the notes logged about them."""

    model: Detector
    data: TrainingDataset
    evaluation: EvalSet | None
    notes: list[str]


def prepare_training(
    annotations: str | Path,
    images: str | Path,
    *,
    preset: str | None = None,
    weights: str | Path | None = None,
    pretrained: bool = False,
    body_weights: str | Path | None = None,
    short_sides: tuple[int, ...] = TrainOptions.short_sides,
    max_side: int = TrainOptions.max_side,
    eval_annotations: str | Path | None = None,
    eval_images: str | Path | None = None,
    device: str = "cpu",
    drop_empty: bool = False,
    use_crowd: bool = False,
    format: str | None = None,
    split: str | None = None,
    classes: str | Path | None = None,
    eval_format: str | None = None,
    eval_split: str | None = None,
) -> PreparedRun:
    """The datasets and the model of a run, checked before any training.

    The training data is ``annotations`` in any format (a COCO instances file with its image
    folder ``images``, a Pascal VOC folder or root, a YOLO ``data.yaml``: see
    :func:`~fasterrcnn.data.dataset_files.load_dataset`, whose ``format``, ``split`` and
    ``classes`` these are; a YOLO dataset's ``train`` split by default); the evaluation set,
    when ``eval_annotations`` is given, likewise (``eval_images``, ``eval_format``,
    ``eval_split``: its ``val`` split by default, and the same VOC class file).

    Every training image must be on disk; the model starts as
    :func:`prepare_training_model` says, moves to ``device``, and its decisions are logged
    (``notes``) with the training data's filtering (``drop_empty``, ``use_crowd``: see
    :class:`~fasterrcnn.data.train_dataset.TrainingDataset`). A problem with the data is a
    :class:`~fasterrcnn.data.json_checks.DatasetError`, with the model's weights an
    :class:`~fasterrcnn.zoo.factory.UnknownModelError`,
    :class:`~fasterrcnn.zoo.checkpoints.CheckpointError` or
    :class:`~fasterrcnn.zoo.download.DownloadError`.
    """
    coco = load_dataset(
        annotations, images, format=format, split=split, classes=classes, strict_boxes=False,
        default_split=TRAIN_SPLIT,
    )  # fmt: skip
    if coco.image_root is None:
        raise DatasetError(f"{annotations}: give the folder of the training images")
    missing = coco.missing_images()
    if missing:
        raise DatasetError(
            f"{len(missing)} of the {len(coco)} training images are not in {coco.image_root} "
            f"(first: {coco.images[missing[0]].file_name})"
        )
    for line in coco.report.lines():
        logger.warning("training data: %s", line)
    evaluation = None
    if eval_annotations is not None:
        evaluation = load_eval_set(
            eval_annotations, eval_images, format=eval_format, split=eval_split,
            classes=classes,
        )  # fmt: skip
    start = prepare_training_model(
        preset, coco.classes, weights=weights, pretrained=pretrained,
        body_weights=body_weights, short_sides=short_sides, max_side=max_side,
    )  # fmt: skip
    for note in start.notes:
        logger.info("%s", note)
    model = start.model.to(device)
    data = TrainingDataset(
        coco, model.config.classes, model.config.input, short_sides, max_side,
        drop_empty=drop_empty, use_crowd=use_crowd,
    )  # fmt: skip
    if evaluation is not None:
        class_mapping(model, evaluation.dataset)
    logger.info("%s", data.summary())
    return PreparedRun(model, data, evaluation, [*start.notes, data.summary()])
