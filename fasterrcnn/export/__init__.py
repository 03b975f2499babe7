"""Export to ONNX and TorchScript (the network with its post-processing as one graph), and
the runtimes that run exported files: onnxruntime, OpenVINO, TorchScript."""

from fasterrcnn.export.graph import ExportFormat, export_model
from fasterrcnn.export.runtimes import BACKENDS, ExportedModel, RuntimeLoadError, load_exported

__all__ = [
    "BACKENDS",
    "ExportFormat",
    "ExportedModel",
    "RuntimeLoadError",
    "export_model",
    "load_exported",
]
