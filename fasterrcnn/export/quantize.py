"""Post-training static int8 quantization of an ONNX export, calibrated on the user's images.

NNCF (:func:`nncf.quantize`, ONNX backend) inserts QuantizeLinear/DequantizeLinear pairs
around the weights and inputs of the layers that pay for it, with scales from the activation
ranges the calibration images give; onnxruntime and OpenVINO run those layers with int8
kernels (VNNI where the CPU has it) and everything else in float32.

Which layers become int8: the convolutions and fully connected layers of the body, the FPN,
the RPN head, the box head and the box predictor (the nodes under :data:`QUANTIZED_SCOPES`).
Everything else stays float, as it decides where boxes are rather than what the features are:
anchor generation, box decoding, proposal selection and NMS, RoIAlign's sampling positions
and the level assignment of the pooler, score thresholds and the final NMS. NNCF's own ranges
(its mixed preset: symmetric weights per output channel, asymmetric activations) and its
fast bias correction are kept.

Calibration: the first ``size`` readable images of the folder, in name order, each through the
model's own preprocessing (:func:`~fasterrcnn.data.transforms.make_batch`, resize and
normalization included) as a batch of one, decoded again each time NNCF reads them (so
that memory is one image's, not the set's).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fasterrcnn.config import ModelConfig
from fasterrcnn.config_json import config_to_json
from fasterrcnn.data.images import ImageError, read_image
from fasterrcnn.data.sources import list_sources, source_kind
from fasterrcnn.data.transforms import make_batch
from fasterrcnn.export.graph import export_model
from fasterrcnn.export.runtimes import CONFIG_KEY, PRECISION_KEY
from fasterrcnn.modeling.faster_rcnn import FasterRCNN

DEFAULT_CALIBRATION_SIZE = 300
QUANTIZED_SCOPES = (
    "/model/backbone/",  # the body and the FPN
    "/model/rpn/head/",
    "/model/roi_heads/box_head/",
    "/model/roi_heads/predictor/",
)
MISSING_NNCF = "int8 export needs NNCF (pip install 'fasterrcnn[int8]')"


class CalibrationError(ValueError):
    """A calibration folder that cannot calibrate (a one-line reason)."""


@dataclass(frozen=True)
class Calibration:
    """The images chosen to calibrate with: ``paths``; ``asked``: how many were asked for;
    ``unreadable``: the files skipped on the way, with their one-line reasons."""

    paths: list[Path]
    asked: int
    unreadable: list[str]


@dataclass(frozen=True)
class QuantizationSummary:
    """What :func:`export_int8` did: the calibration, the nodes quantized (by NNCF's
    QuantizeLinear count) and the float nodes it was told to leave alone."""

    calibration: Calibration
    quantizers: int
    float_nodes: int


def calibration_images(folder: str | Path, size: int = DEFAULT_CALIBRATION_SIZE) -> Calibration:
    """The first ``size`` readable images of ``folder`` (not its subfolders), in name order.

    Raises:
        CalibrationError: ``folder`` is not a folder or holds no readable image.
    """
    if size < 1:
        raise CalibrationError(f"--calibration-size must be at least 1, not {size}")
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: not a folder of calibration images")
    candidates = [Path(p) for p in list_sources([str(folder)]) if source_kind(p) == "image"]
    chosen: list[Path] = []
    unreadable: list[str] = []
    for path in candidates:
        if len(chosen) == size:
            break
        try:
            read_image(path)
        except ImageError as err:
            unreadable.append(str(err))
            continue
        chosen.append(path)
    if not chosen:
        found = f"{len(candidates)} image file(s), none readable" if candidates else "no image"
        raise CalibrationError(f"{folder}: {found} to calibrate with")
    return Calibration(chosen, size, unreadable)


def graph_inputs(image: np.ndarray, config: ModelConfig) -> dict[str, np.ndarray]:
    """The exported graph's inputs for one HxWx3 uint8 RGB ``image``, as the model's own
    preprocessing (:func:`~fasterrcnn.data.transforms.make_batch`) makes them."""
    batch = make_batch([image], config.input)
    return {
        "images": batch.tensor.numpy(),
        "image_sizes": np.asarray(batch.image_sizes, dtype=np.int64),
        "original_sizes": np.asarray(batch.original_sizes, dtype=np.int64),
    }


def export_int8(
    model: FasterRCNN, path: str | Path, calibration: Calibration
) -> QuantizationSummary:
    """Write ``model`` to ``path`` as an int8 ONNX graph calibrated on ``calibration``'s
    images; the file carries the configuration and says it is int8 (metadata
    :data:`~fasterrcnn.export.runtimes.PRECISION_KEY`).

    Raises:
        ImportError: NNCF or onnx is missing (its ``name`` says which).
    """
    try:
        import nncf
        import onnx
    except ImportError as err:
        raise ImportError(MISSING_NNCF, name=err.name) from None
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="fasterrcnn-int8-") as tmp:
        float_path = export_model(model, Path(tmp) / "float.onnx", "onnx")
        graph = onnx.load(str(float_path))
    ignored = [node.name for node in graph.graph.node if not node.name.startswith(QUANTIZED_SCOPES)]
    level = logging.getLogger("nncf").level
    nncf.set_log_level(logging.ERROR)  # its per-node notes, for this call; the bars stay
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized = nncf.quantize(
                graph,
                nncf.Dataset(
                    calibration.paths, lambda path: graph_inputs(read_image(path), model.config)
                ),
                subset_size=len(calibration.paths),
                ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
            )
    finally:
        nncf.set_log_level(level)
    _set_metadata(quantized, {CONFIG_KEY: config_to_json(model.config), PRECISION_KEY: "int8"})
    onnx.save(quantized, str(path))
    quantizers = sum(node.op_type == "QuantizeLinear" for node in quantized.graph.node)
    return QuantizationSummary(calibration, quantizers, len(ignored))


def _set_metadata(graph: Any, entries: dict[str, str]) -> None:
    kept = [p for p in graph.metadata_props if p.key not in entries]
    del graph.metadata_props[:]
    for prop in kept:
        graph.metadata_props.add(key=prop.key, value=prop.value)
    for key, value in entries.items():
        graph.metadata_props.add(key=key, value=value)


def iter_quantized_nodes(graph: Any) -> Iterator[str]:
    """The names of the nodes whose inputs NNCF quantized (for reports and tests)."""
    quantized = {node.output[0] for node in graph.graph.node if node.op_type == "DequantizeLinear"}
    for node in graph.graph.node:
        if node.op_type != "DequantizeLinear" and any(name in quantized for name in node.input):
            yield node.name
