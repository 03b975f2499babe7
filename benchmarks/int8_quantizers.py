"""Two int8 quantizers side by side on the same float graph, the same layers and the same
calibration images: NNCF (what ``fasterrcnn export --precision int8`` uses) against
onnxruntime's static quantizer (``quantize_static``: QDQ, weights int8 per output channel,
activations uint8 from min/max ranges, the layers' inputs quantized and their outputs left
float, as NNCF does).

Both files run in OpenVINO. For each: the time to quantize, COCO AP and AP50 on the evaluated
images, the agreement with float32's detections (as ``int8_accuracy.py`` counts it), and OpenVINO's
seconds per image over those images (the best of ROUNDS passes, the files taking turns). The model is the trained one of
``benchmarks/bf16_accuracy.py`` (or ``--weights``), evaluated on the images it was trained on
and calibrated on the other images of the set.

Run from the repository root, after ``benchmarks/int8_accuracy.py`` (its float32 results are
reused when they are there)::

    .venv/bin/python benchmarks/int8_quantizers.py --output runs/bf16-accuracy
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import onnx
from bf16_accuracy import fasterrcnn
from int8_accuracy import agreement, evaluation_split, split_parser

import fasterrcnn as frcnn
from fasterrcnn.data.images import read_image
from fasterrcnn.export.graph import export_model
from fasterrcnn.export.quantize import (
    QUANTIZED_SCOPES,
    calibration_images,
    export_int8,
    graph_inputs,
)
from fasterrcnn.export.runtimes import CONFIG_KEY, PRECISION_KEY

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
ROUNDS = 3  # timed passes over the images per file; the best is kept


def onnxruntime_int8(model: Any, float_path: Path, paths: list[Path], out: Path) -> None:
    """``float_path`` quantized by onnxruntime on ``paths``, the same layers as NNCF's."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    graph = onnx.load(str(float_path))
    layers = [node.name for node in graph.graph.node
              if node.op_type in QUANTIZED_OPS and node.name.startswith(QUANTIZED_SCOPES)]  # fmt: skip

    class Images(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.left = iter(paths)

        def get_next(self) -> dict | None:
            path = next(self.left, None)
            return None if path is None else graph_inputs(read_image(path), model.config)

    quantize_static(
        str(float_path), str(out), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        nodes_to_quantize=layers, calibrate_method=CalibrationMethod.MinMax,
        # the layers' inputs only, as NNCF: no int8 round trip of their outputs
        extra_options={"OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)},
    )  # fmt: skip
    quantized = onnx.load(str(out))
    entries = {prop.key: prop.value for prop in graph.metadata_props}
    entries[PRECISION_KEY] = "int8"
    del quantized.metadata_props[:]
    for key, value in entries.items():
        quantized.metadata_props.add(key=key, value=value)
    assert CONFIG_KEY in entries
    onnx.save(quantized, str(out))
    print(f"onnxruntime quantized {len(layers)} layers")


def seconds_per_image(path: Path, images: list[Path]) -> float:
    """OpenVINO's time per image over ``images``, one at a time, after one warm-up image."""
    model = frcnn.load_exported(path, backend="openvino")
    pixels = [read_image(image) for image in images]
    model.predict(pixels[0])
    start = time.perf_counter()
    for image in pixels:
        model.predict(image)
    return (time.perf_counter() - start) / len(pixels)


def main() -> None:
    args = split_parser(__doc__.split("\n", 1)[0]).parse_args()
    split = evaluation_split(args)
    weights, images, annotations = split.weights, split.images, split.annotations
    folder = split.calibration_folder(args.output / "calibration", len(split.others))
    calibration = calibration_images(folder, args.calibration_size)
    print(f"calibrating on {len(calibration.paths)} images not evaluated")

    model = frcnn.create_model(weights=weights)
    files = {"NNCF": args.output / "int8-nncf.onnx", "onnxruntime": args.output / "int8-ort.onnx"}
    seconds = {}
    start = time.perf_counter()
    export_int8(model, files["NNCF"], calibration)
    seconds["NNCF"] = time.perf_counter() - start
    float_path = export_model(model, args.output / "float.onnx", "onnx")
    start = time.perf_counter()
    onnxruntime_int8(model, float_path, calibration.paths, files["onnxruntime"])
    seconds["onnxruntime"] = time.perf_counter() - start

    fp32 = args.output / "results_fp32.json"
    if not fp32.is_file():
        fasterrcnn("eval", "--images", images, "--annotations", annotations, "--weights",
                   weights, "--results", fp32)  # fmt: skip
    reference = json.loads(fp32.read_text())
    figures = {}
    for name, path in files.items():
        metrics = args.output / f"metrics_q_{name}.json"
        found = args.output / f"results_q_{name}.json"
        fasterrcnn("eval", "--images", images, "--annotations", annotations, "--weights", path,
                   "--backend", "openvino", "--metrics", metrics, "--results", found)  # fmt: skip
        stats = json.loads(metrics.read_text())
        agreed = agreement(reference, json.loads(found.read_text()))
        figures[name] = (
            f"{seconds[name]:>11.0f}{stats['AP']:>8.4f}{stats['AP50']:>8.4f}{agreed:>11.3f}"
        )
    speeds: dict[str, list[float]] = {name: [] for name in files}
    for _ in range(ROUNDS):  # the files alternate, so that neither has the warmer machine
        for name, path in files.items():
            speeds[name].append(seconds_per_image(path, [images / n for n in split.evaluated]))
    rows = [f"{'quantizer':<13}{'quantize s':>11}{'AP':>8}{'AP50':>8}{'agreement':>11}"
            f"{'s/image':>9}"]  # fmt: skip
    rows += [f"{name:<13}{figures[name]}{min(speeds[name]):>9.3f}" for name in files]
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
