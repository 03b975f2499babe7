"""Faster R-CNN (ResNet + FPN) object detection in PyTorch."""

from fasterrcnn.config import ModelConfig
from fasterrcnn.data.dataset_files import load_dataset
from fasterrcnn.data.images import ImageError, read_image
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.evaluation.evaluate import evaluate
from fasterrcnn.evaluation.report import ReportOptions
from fasterrcnn.export.runtimes import load_exported
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.detector import Detector
from fasterrcnn.inference.predict import iter_detections
from fasterrcnn.inference.slicing import SliceOptions
from fasterrcnn.modeling.faster_rcnn import FasterRCNN
from fasterrcnn.zoo import (
    CheckpointError,
    DownloadError,
    UnknownModelError,
    create_model,
    get_preset,
    list_models,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DatasetError",
    "Detections",
    "Detector",
    "DownloadError",
    "FasterRCNN",
    "ImageError",
    "ModelConfig",
    "ReportOptions",
    "SliceOptions",
    "UnknownModelError",
    "create_model",
    "evaluate",
    "get_preset",
    "iter_detections",
    "list_models",
    "load_dataset",
    "load_exported",
    "read_image",
]
