"""Model zoo: presets, checkpoint formats and weight downloads, and :func:`create_model`,
which builds a :class:`~fasterrcnn.inference.detector.Detector` from them."""

from fasterrcnn.modeling.precision import PrecisionError
from fasterrcnn.zoo.checkpoint_files import CheckpointError
from fasterrcnn.zoo.download import DownloadError
from fasterrcnn.zoo.factory import UnknownModelError, create_model, get_preset, list_models
from fasterrcnn.zoo.native import NativeCheckpoint, is_native, read_native, save_native

__all__ = [
    "CheckpointError",
    "DownloadError",
    "NativeCheckpoint",
    "PrecisionError",
    "UnknownModelError",
    "create_model",
    "get_preset",
    "is_native",
    "list_models",
    "read_native",
    "save_native",
]
