"""Optional acceleration: torchvision's compiled kernels, when they import and run here.

Set the environment variable ``FASTERRCNN_PURE_OPS=1`` to always use the pure-PyTorch ops
(for benchmarks and debugging).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch

# A tiny call per op, to check that the compiled kernel really runs with this torch build.
_PROBES: dict[str, Callable[[Callable], object]] = {
    "nms": lambda op: op(torch.zeros(1, 4), torch.zeros(1), 0.5),
    "roi_align": lambda op: op(torch.zeros(1, 1, 2, 2), torch.zeros(1, 5), (1, 1), 1.0, 1, False),
}


@functools.cache
def torchvision_op(name: str) -> Callable | None:
    """``torchvision.ops.<name>`` if usable (see the module docstring), else None."""
    if os.environ.get("FASTERRCNN_PURE_OPS", "") not in ("", "0"):
        return None
    try:
        import torchvision.ops

        op = getattr(torchvision.ops, name)
        _PROBES[name](op)
    except Exception:
        return None
    return op
