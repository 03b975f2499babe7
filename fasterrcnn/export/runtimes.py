"""Exported graphs (see :mod:`fasterrcnn.export.graph`) run by onnxruntime, OpenVINO or
TorchScript behind the interface the inference loop runs the PyTorch model through
(:class:`~fasterrcnn.inference.protocol.BatchDetector`), so that detection, drawing, JSON
and evaluation are the same whatever runs the network."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import Tensor

from fasterrcnn.config import ModelConfig
from fasterrcnn.config_json import ConfigError, config_from_json
from fasterrcnn.inference import predict as _predict
from fasterrcnn.modeling.postprocess import BatchDetections
from fasterrcnn.modeling.precision import Precision

Backend = Literal["onnxruntime", "openvino", "torchscript"]
BACKENDS: tuple[Backend, ...] = ("onnxruntime", "openvino", "torchscript")
CONFIG_KEY = "fasterrcnn_config"  # the model configuration (JSON) inside an exported file
PRECISION_KEY = "fasterrcnn_precision"  # "int8" in a quantized file (absent: float32)


class RuntimeLoadError(RuntimeError):
    """An exported file that cannot be run (a one-line reason)."""


class ExportedModel:
    """An exported detector, a :class:`~fasterrcnn.inference.protocol.BatchDetector`:
    ``detect_batch`` takes the inference loop's padded batch and returns its detections;
    ``config`` is the model's configuration, read from the file; :meth:`predict` is the
    PyTorch :class:`~fasterrcnn.inference.detector.Detector`'s. It returns no proposals."""

    device = torch.device("cpu")
    returns_proposals = False

    # model.predict(source, ...) is fasterrcnn.inference.predict.predict(model, source, ...).
    predict = _predict.predict

    def __init__(
        self,
        path: str | Path,
        backend: Backend,
        precision: Precision = "fp32",
        threads: int | None = None,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise RuntimeLoadError(f"{path}: no such file")
        if backend not in BACKENDS:
            raise RuntimeLoadError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
        if precision not in ("fp32", "bf16") or (precision == "bf16" and backend != "openvino"):
            raise RuntimeLoadError(f"backend {backend} runs fp32 only, not {precision}")
        self.path = path
        self.backend = backend
        self.precision = precision
        threads = threads or torch.get_num_threads()
        if backend == "onnxruntime":
            self._run, metadata = _onnxruntime(path, threads)
        elif backend == "openvino":
            self._run, metadata = _openvino(path, threads, precision)
        else:
            self._run, metadata = _torchscript(path)
        config_json = metadata.get(CONFIG_KEY)
        if config_json is None:
            raise RuntimeLoadError(
                f"{path}: not a fasterrcnn export (no model configuration inside)"
            )
        # an int8 file's quantized layers run in int8, the others in ``precision``
        self.quantized = metadata.get(PRECISION_KEY) == "int8"
        try:
            self.config: ModelConfig = config_from_json(config_json)
        except ConfigError as err:
            raise RuntimeLoadError(f"{path}: bad model configuration ({err})") from None

    def detect_batch(
        self,
        images: Tensor,
        image_sizes: Tensor,
        original_sizes: Tensor,
        *,
        proposals: bool = False,
    ) -> tuple[BatchDetections, None]:
        """``images`` [N, 3, H, W] normalized and padded; sizes [N, 2] (h, w)."""
        if proposals:
            raise ValueError("an exported model returns detections only, not proposals")
        inputs = [
            images.float().cpu().contiguous().numpy(),
            image_sizes.to(torch.int64).cpu().numpy(),
            original_sizes.to(torch.int64).cpu().numpy(),
        ]
        boxes, scores, labels, batch_index = (
            torch.from_numpy(np.asarray(x)) for x in self._run(inputs)
        )
        return BatchDetections(boxes, scores, labels.long(), batch_index.long()), None


def load_exported(
    path: str | Path, backend: str = "openvino", *, threads: int | None = None
) -> ExportedModel:
    """The exported file ``path`` (``fasterrcnn export``: ONNX for onnxruntime and openvino,
    TorchScript for torchscript) run by ``backend`` on ``threads`` CPU threads (default:
    PyTorch's count). Its configuration and class table come from the file; its
    :meth:`~ExportedModel.predict` returns the
    :class:`~fasterrcnn.inference.detections.Detections` the PyTorch model's does. A file
    that cannot be run, or an unknown ``backend``, is a one-line :class:`RuntimeLoadError`."""
    if backend not in BACKENDS:
        raise RuntimeLoadError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
    if threads is not None and threads < 1:
        raise RuntimeLoadError(f"threads must be at least 1, not {threads}")
    return ExportedModel(path, cast(Backend, backend), threads=threads)


def _onnxruntime(path: Path, threads: int) -> tuple[Any, dict[str, str]]:
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeLoadError(
            "onnxruntime is not installed (pip install 'fasterrcnn[export]')"
        ) from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:
        raise RuntimeLoadError(f"{path}: onnxruntime cannot load it ({_first_line(err)})") from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    names = [i.name for i in session.get_inputs()]
    return (lambda inputs: session.run(None, dict(zip(names, inputs, strict=True)))), metadata


def _openvino(path: Path, threads: int, precision: Precision) -> tuple[Any, dict[str, str]]:
    try:
        import openvino
    except ImportError:
        raise RuntimeLoadError("openvino is not installed (pip install openvino)") from None
    core = openvino.Core()
    try:
        model = core.read_model(str(path))
        # OpenVINO would pick bfloat16 by itself on CPUs that have it: the precision is ours.
        settings = {
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        compiled = core.compile_model(model, "CPU", settings)
    except Exception as err:
        raise RuntimeLoadError(f"{path}: OpenVINO cannot load it ({_first_line(err)})") from None
    metadata = _onnx_metadata(path)
    request = compiled.create_infer_request()

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        results = request.infer(inputs)
        return [results[output] for output in compiled.outputs]

    return run, metadata


def _torchscript(path: Path) -> tuple[Any, dict[str, str]]:
    extra = {CONFIG_KEY: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as err:
        if _is_int8_onnx(path):
            raise RuntimeLoadError(
                f"{path}: an int8 ONNX file, which runs on onnxruntime or openvino, not torchscript"
            ) from None
        raise RuntimeLoadError(f"{path}: not a TorchScript file ({_first_line(err)})") from None
    if not extra[CONFIG_KEY]:
        raise RuntimeLoadError(f"{path}: not a fasterrcnn export (no model configuration inside)")

    def run(inputs: list[np.ndarray]) -> tuple[Tensor, ...]:
        with torch.inference_mode():
            return module(*(torch.from_numpy(x) for x in inputs))

    config = extra[CONFIG_KEY]
    return run, {CONFIG_KEY: config.decode() if isinstance(config, bytes) else config}


def _onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _is_int8_onnx(path: Path) -> bool:
    try:
        return _onnx_metadata(path).get(PRECISION_KEY) == "int8"
    except Exception:  # not ONNX either, or onnx missing
        return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
