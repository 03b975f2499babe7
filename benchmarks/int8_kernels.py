"""The int8 floor's kernel rate: one 3x3 convolution of 256 channels (the model's dominant
kernel, as ``inference_peaks.py``'s ``conv_peak`` times it in fp32 and bf16), quantized as NNCF
quantizes the model's (QuantizeLinear/DequantizeLinear around an int8 per-channel weight and
a uint8 activation), compiled by OpenVINO, its convolution timed by OpenVINO's own counter, best of ``repeats``, at 100 x 136 and at
200 x 272 (the FPN's finest level at 800 x 1088): the faster of the two. OpenVINO runs it
with its int8 kernels (VNNI where the CPU has it); the larger map runs faster per
operation, and the model's own int8 convolutions come close to its rate."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

SIZES = ((100, 136), (200, 272))
CHANNELS = 256


def conv_graph(height: int, width: int) -> object:
    """The ONNX graph: x (float) -> Q/DQ (uint8) -> Conv (int8 weight, DQ) -> y."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, (CHANNELS, CHANNELS, 3, 3), dtype=np.int8)
    initializers = [
        numpy_helper.from_array(np.float32(0.05), "x_scale"),
        numpy_helper.from_array(np.uint8(128), "x_zero"),
        numpy_helper.from_array(weight, "w_int8"),
        numpy_helper.from_array(np.full(CHANNELS, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(CHANNELS, np.int8), "w_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_int8", "w_scale", "w_zero"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "conv3x3_int8",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def int8_conv_peak(threads: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` int8 GOP/s of the convolution in OpenVINO on ``threads`` threads,
    the faster of the two sizes."""
    return max(_conv_rate(height, width, threads, repeats) for height, width in SIZES)


def _conv_rate(height: int, width: int, threads: int, repeats: int) -> float:
    import onnx
    import openvino

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conv.onnx"
        onnx.save(conv_graph(height, width), str(path))  # type: ignore[arg-type]
        core = openvino.Core()
        compiled = core.compile_model(
            core.read_model(str(path)), "CPU",
            {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True},
        )  # fmt: skip
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).standard_normal((1, CHANNELS, height, width))
    x = x.astype(np.float32)
    request.infer([x])  # compile-time work and caches
    best = float("inf")
    for _ in range(repeats):
        request.infer([x])
        # the convolution kernel's own time (OpenVINO's counter), not the input's
        # quantization or the output's conversion, which the model runs as layers of their own
        best = min(best, sum(
            info.real_time.total_seconds() for info in request.get_profiling_info()
            if info.node_type == "Convolution" and info.status.name == "EXECUTED"
        ))  # fmt: skip
    return 2 * CHANNELS * CHANNELS * 9 * height * width / best / 1e9


if __name__ == "__main__":
    print(f"int8 3x3 convolution, 256 channels: {int8_conv_peak(2):.0f} GOP/s on 2 threads")
