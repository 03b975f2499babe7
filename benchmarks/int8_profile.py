"""Where an int8 file's time goes in OpenVINO: per-layer times from OpenVINO's own counters
(``PERF_COUNT``) on one image, grouped by the kind of kernel that ran, with the int8
convolutions' rate against the int8 kernel rate of ``int8_kernels.py``.

Run from the repository root::

    .venv/bin/python benchmarks/int8_profile.py model-int8.onnx               # a COCO image
    .venv/bin/python benchmarks/int8_profile.py model-int8.onnx --image photo.jpg --top 15
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_kernels import int8_conv_peak
from read_dataset import cpu_name

import fasterrcnn
from fasterrcnn.export.quantize import graph_inputs

IMAGE = Path(__file__).resolve().parents[1] / "tests/fixtures/coco/val2017/000000000139.jpg"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="an int8 (or any) ONNX export")
    p.add_argument("--image", type=Path, default=IMAGE)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3, help="the fastest run's counters are shown")
    p.add_argument("--top", type=int, default=10, help="slowest single layers listed")
    args = p.parse_args()
    import openvino

    config = fasterrcnn.load_exported(args.model, "onnxruntime").config
    inputs = list(graph_inputs(fasterrcnn.read_image(args.image), config).values())
    height, width = inputs[0].shape[-2:]
    core = openvino.Core()
    compiled = core.compile_model(
        core.read_model(str(args.model)), "CPU",
        {"PERF_COUNT": True, "INFERENCE_NUM_THREADS": args.threads,
         "INFERENCE_PRECISION_HINT": "f32"},
    )  # fmt: skip
    request = compiled.create_infer_request()
    request.infer(inputs)
    best = None
    for _ in range(args.runs):
        request.infer(inputs)
        layers = [
            (info.node_name, info.node_type, info.exec_type, info.real_time.total_seconds())
            for info in request.get_profiling_info()
            if info.status.name == "EXECUTED"
        ]
        total = sum(t for *_, t in layers)
        if best is None or total < best[0]:
            best = (total, layers)
    assert best is not None
    total, layers = best
    groups: dict[str, float] = defaultdict(float)
    for _, node_type, exec_type, seconds in layers:
        kind = "int8 " if "I8" in exec_type.upper() or "U8" in exec_type.upper() else ""
        groups[f"{kind}{node_type}"] += seconds
    print(f"CPU: {cpu_name()}, {args.threads} threads; {args.model.name}, input {height} x "
          f"{width}; layers' time (best of {args.runs}): {total:.3f} s")  # fmt: skip
    print(f"\n{'kind of layer':<34}{'seconds':>9}{'share':>8}")
    for kind, seconds in sorted(groups.items(), key=lambda kv: -kv[1])[:15]:
        print(f"{kind:<34}{seconds:>9.3f}{seconds / total:>8.1%}")
    print(f"\nslowest {args.top} layers:")
    for name, node_type, exec_type, seconds in sorted(layers, key=lambda x: -x[3])[: args.top]:
        print(f"  {seconds * 1000:7.1f} ms  {node_type:<16}{exec_type:<24}{name}")
    peak = int8_conv_peak(args.threads)
    print(f"\nint8 3x3 convolution kernel rate on this machine: {peak:.0f} GOP/s")


if __name__ == "__main__":
    main()
