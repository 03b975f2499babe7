"""Weight initialisation from a normal distribution that a model built on the meta device skips.

A model whose weights are about to be loaded is built on the meta device (no memory, no
random numbers). There, ``nn.init.normal_`` and ``kaiming_normal_`` would only cost time:
their first call on a meta tensor imports PyTorch's Python reference kernels (about 1 s).
The uniform and constant initialisers have native meta kernels and need no such care.
"""

from __future__ import annotations

from torch import Tensor, nn


def normal_(tensor: Tensor, std: float) -> None:
    """``nn.init.normal_(tensor, 0, std)``, nothing on the meta device."""
    if not tensor.is_meta:
        nn.init.normal_(tensor, std=std)


def kaiming_normal_fan_out_(tensor: Tensor) -> None:
    """He init for a conv followed by ReLU (fan out), nothing on the meta device."""
    if not tensor.is_meta:
        nn.init.kaiming_normal_(tensor, mode="fan_out", nonlinearity="relu")
