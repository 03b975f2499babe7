"""Convolutions and linear layers with the addition and ReLU that follow them fused in.

In float32 inference on a CPU, oneDNN applies a residual addition and a ReLU while it writes
the convolution's (or linear layer's) output, saving one or two passes over a feature map
(the bottlenecks' 1x1 convolutions ran 1.2-2.2x faster, the R50 body 10%). Elsewhere (autograd,
autocast, other devices, a traced graph, which keeps standard ops) the same result comes from
the separate ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_HAS_FUSED_OPS = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, "_convolution_pointwise"
)


def capturing_graph() -> bool:
    """Whether the running code is being recorded into a graph (``torch.jit.trace``,
    ``torch.compile``), which keeps the standard ops."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def fusable(x: Tensor) -> bool:
    """Whether oneDNN's fused ops take ``x``: float32 CPU inference, outside autocast and
    outside a traced graph."""
    return (
        _HAS_FUSED_OPS
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not capturing_graph()
        and not torch.is_autocast_enabled("cpu")
    )


def conv2d(
    x: Tensor,
    conv: nn.Conv2d,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    residual: Tensor | None = None,
    relu: bool = False,
    overwrite_residual: bool = False,
) -> Tensor:
    """``relu(conv(x) + residual)`` (each part when asked) with ``conv``'s geometry and its
    weight and bias, or ``weight``/``bias`` in their place (a folded norm's).

    ``overwrite_residual``: the caller no longer needs ``residual``, so the fused op may
    accumulate into it instead of writing a new map (the 1x1 convolution that ends a
    bottleneck at stride 4 ran in 12 ms instead of 17).
    """
    if weight is None:
        weight, bias = conv.weight, conv.bias
    if fusable(x):
        args = (weight, bias, conv.padding, conv.stride, conv.dilation, conv.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, *args, "relu" if relu else "none", [], ""
            )
        if overwrite_residual and _accumulable(x, residual):
            return torch.ops.mkldnn._convolution_pointwise_.binary(
                residual, x, *args, "add", 1.0, "relu" if relu else None, [], ""
            )
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, *args, "add", 1.0, "relu" if relu else None, [], ""
        )
    out = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    if residual is not None:
        out = out.add_(residual)
    return F.relu(out, inplace=True) if relu else out


def _accumulable(x: Tensor, residual: Tensor) -> bool:
    """Whether oneDNN can write the convolution of ``x`` into ``residual`` (which has the
    output's shape, as for the out-of-place op): a plain channels-last map of ``x``'s dtype."""
    return (
        residual.dtype == x.dtype
        and residual.is_contiguous(memory_format=torch.channels_last)
        and not residual.requires_grad
    )


def linear_relu(x: Tensor, linear: nn.Linear) -> Tensor:
    """``relu(linear(x))``."""
    if fusable(x):
        return torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, "relu", [], "")
    return F.relu(linear(x), inplace=True)
