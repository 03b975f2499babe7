"""Export the detector as one graph, ONNX or TorchScript, post-processing included.

The graph takes what :mod:`fasterrcnn.data.transforms` makes of the images, so that any
runtime reuses the inference loop's decoding, resizing and batching:

- ``images`` float32 [N, 3, H, W], normalized and padded at the bottom/right;
- ``image_sizes`` int64 [N, 2], each image's (h, w) inside the padding;
- ``original_sizes`` int64 [N, 2], each image's (h, w) before resizing;

and returns the detections of the whole batch, image by image and best first within each:
``boxes`` float32 [D, 4] (x1, y1, x2, y2 in original pixels), ``scores`` float32 [D],
``labels`` int64 [D] (foreground class index), ``batch_index`` int64 [D]. The batch size and
the image size are dynamic.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from fasterrcnn.config_json import config_to_json
from fasterrcnn.export.runtimes import CONFIG_KEY
from fasterrcnn.modeling.faster_rcnn import FasterRCNN

ExportFormat = Literal["onnx", "torchscript"]
INPUT_NAMES = ("images", "image_sizes", "original_sizes")
OUTPUT_NAMES = ("boxes", "scores", "labels", "batch_index")
ONNX_OPSET = 17


class DetectionGraph(nn.Module):
    """The network and its post-processing: the tensors above in, the detections out."""

    def __init__(self, model: FasterRCNN) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: Tensor, image_sizes: Tensor, original_sizes: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        detections, _ = self.model.detect_batch(images, image_sizes, original_sizes)
        return detections.boxes, detections.scores, detections.labels, detections.batch_index


def example_inputs(model: FasterRCNN) -> tuple[Tensor, Tensor, Tensor]:
    """Two images of different sizes in one padded batch, to trace with."""
    divisor = model.config.input.pad_divisor
    height, width = 10 * divisor, 12 * divisor
    images = torch.randn(2, 3, height, width)
    image_sizes = torch.tensor([[height, width], [height - divisor // 2, width - divisor]])
    return images, image_sizes, image_sizes * 2


def export_model(model: FasterRCNN, path: str | Path, fmt: ExportFormat) -> Path:
    """Write ``model`` (float32, on the CPU) to ``path`` as ONNX or TorchScript."""
    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"format must be 'onnx' or 'torchscript', not {fmt!r}")
    model = model.eval()
    if model.device.type != "cpu" or model.precision != "fp32":
        raise ValueError("export takes the float32 model on the CPU")
    path = Path(path)
    graph = DetectionGraph(model).eval()  # export restores the mode it found
    inputs = example_inputs(model)
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python value it freezes; the graph is checked by
        # the export tests instead.
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            torch.onnx.export(
                graph,
                inputs,
                str(path),
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    "images": {0: "batch", 2: "height", 3: "width"},
                    "image_sizes": {0: "batch"},
                    "original_sizes": {0: "batch"},
                    **{name: {0: "detections"} for name in OUTPUT_NAMES},
                },
            )
        else:
            traced = torch.jit.trace(graph, inputs, check_trace=False)
    config = config_to_json(model.config)
    if fmt == "onnx":
        _add_onnx_metadata(path, {CONFIG_KEY: config})
    else:
        traced.save(str(path), _extra_files={CONFIG_KEY: config})
    return path


def _add_onnx_metadata(path: Path, entries: dict[str, str]) -> None:
    import onnx

    graph = onnx.load(str(path))
    for key, value in entries.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
