"""Faster R-CNN (ResNet + FPN) object detection in PyTorch."""

from fasterrcnn.config import ModelConfig
from fasterrcnn.data.images import ImageError, read_image
from fasterrcnn.engine.predict import Detections
from fasterrcnn.modeling.detector import FasterRCNN
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
    "Detections",
    "DownloadError",
    "FasterRCNN",
    "ImageError",
    "ModelConfig",
    "UnknownModelError",
    "create_model",
    "get_preset",
    "list_models",
    "read_image",
]
