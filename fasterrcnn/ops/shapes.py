"""Sizes that stay symbolic in a traced or exported graph.

While tracing (``torch.jit.trace``, ONNX export) a tensor's sizes are 0-dim tensors, so that
the graph follows the input's shape; Python's ``min`` on them would freeze the traced value.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor


def as_size(value: int | Tensor) -> int:
    """``value`` where torch expects a size: an int, or while tracing the 0-dim tensor that
    stands for one (torch takes it, and the graph keeps it symbolic)."""
    return cast(int, value)


def at_most(size: int | Tensor, limit: int) -> int:
    """``min(size, limit)``, kept symbolic while tracing."""
    if isinstance(size, Tensor):
        return as_size(torch.clamp(size, max=limit))
    return min(size, limit)
