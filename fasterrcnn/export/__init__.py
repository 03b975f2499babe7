"""Export to ONNX and TorchScript (the network with its post-processing as one graph), int8
ONNX calibrated on the user's images, and the runtimes that run exported files:
onnxruntime, OpenVINO, TorchScript."""

from fasterrcnn.export.graph import ExportFormat, export_model
from fasterrcnn.export.quantize import (
    Calibration,
    CalibrationError,
    QuantizationSummary,
    calibration_images,
    export_int8,
)
from fasterrcnn.export.runtimes import BACKENDS, ExportedModel, RuntimeLoadError, load_exported

__all__ = [
    "BACKENDS",
    "Calibration",
    "CalibrationError",
    "ExportFormat",
    "ExportedModel",
    "QuantizationSummary",
    "RuntimeLoadError",
    "calibration_images",
    "export_int8",
    "export_model",
    "load_exported",
]
