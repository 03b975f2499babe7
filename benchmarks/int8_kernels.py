"""The int8 floor's kernel rate: one 3x3 convolution of 256 channels at 100 x 136 (the
model's dominant kernel, as ``inference.py``'s ``conv_peak`` times it in fp32 and bf16),
quantized as NNCF quantizes the model's (QuantizeLinear/DequantizeLinear around an int8
per-channel weight and a uint8 activation), compiled by OpenVINO and timed best of
``repeats``. OpenVINO runs it with its int8 kernels (VNNI where the CPU has it)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (1, 256, 100, 136)
CHANNELS = 256


def conv_graph() -> object:
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
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def int8_conv_peak(threads: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` int8 GOP/s of the convolution in OpenVINO on ``threads`` threads."""
    import onnx
    import openvino

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conv.onnx"
        onnx.save(conv_graph(), str(path))  # type: ignore[arg-type]
        core = openvino.Core()
        compiled = core.compile_model(
            core.read_model(str(path)), "CPU",
            {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"},
        )  # fmt: skip
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    request.infer([x])  # compile-time work and caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        request.infer([x])
        best = min(best, time.perf_counter() - start)
    return 2 * CHANNELS * CHANNELS * 9 * SHAPE[2] * SHAPE[3] / best / 1e9


if __name__ == "__main__":
    print(f"int8 3x3 convolution, 256 channels: {int8_conv_peak(2):.0f} GOP/s on 2 threads")
