"""ResNet / ResNeXt body: stem + 4 stages, returning res2..res5 (strides 4, 8, 16, 32).

Parameter names follow the classic ResNet layout (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``), shared by torchvision's and MegEngine's checkpoints.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasterrcnn.config import BodyConfig
from fasterrcnn.modeling import init
from fasterrcnn.ops import fused


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters: ``y = x * s + b`` with
    ``s = weight / sqrt(running_var + eps)`` and ``b = bias - running_mean * s``."""

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        # The preceding conv's weight with this norm folded in, for inference (see fold_into).
        self._folded: tuple[tuple, Tensor, Tensor] | None = None

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def fold_into(self, conv_weight: Tensor) -> tuple[Tensor, Tensor]:
        """``conv_weight`` scaled per output channel, and the bias: the conv and this norm as
        one conv. Without autograd the pair is computed once and kept until a tensor involved
        changes (another device, dtype, memory format or values): a conv fed the same weight
        tensor on every call also skips oneDNN's weight preparation (the R50 body ran 1.5x
        faster than when folding on every call)."""
        if torch.is_grad_enabled() or fused.capturing_graph():  # a graph records the fold
            scale, shift = self.scale_and_shift()
            return conv_weight * scale[:, None, None, None], shift
        tensors = (conv_weight, self.weight, self.bias, self.running_mean, self.running_var)
        key = tuple(
            (t.data_ptr(), 0 if t.is_inference() else t._version, t.dtype, t.device, t.stride())
            for t in tensors
        )
        if self._folded is None or self._folded[0] != key:
            scale, shift = self.scale_and_shift()
            self._folded = (key, conv_weight * scale[:, None, None, None], shift)
        return self._folded[1], self._folded[2]

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_and_shift()
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def conv_norm(
    conv: nn.Conv2d,
    norm: nn.Module,
    x: Tensor,
    residual: Tensor | None = None,
    relu: bool = False,
    overwrite_residual: bool = False,
) -> Tensor:
    """``norm(conv(x))``, plus ``residual`` when given, then a ReLU when asked.

    A frozen norm is folded into the conv (one pass over the output), and the addition and
    ReLU are fused into it where oneDNN can (see :mod:`fasterrcnn.ops.fused`), accumulating
    into ``residual`` when the caller is done with it (``overwrite_residual``).
    """
    if isinstance(norm, FrozenBatchNorm2d):
        weight, shift = norm.fold_into(conv.weight)
        return fused.conv2d(x, conv, weight, shift, residual, relu, overwrite_residual)
    out = norm(conv(x))
    if residual is not None:
        out = out.add_(residual)
    return F.relu(out, inplace=True) if relu else out


def make_norm(kind: str, channels: int, eps: float) -> nn.Module:
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels, eps)
    if kind == "bn":
        return nn.BatchNorm2d(channels, eps=eps)
    if kind == "gn":
        return nn.GroupNorm(32, channels, eps=eps)
    raise ValueError(f"unknown norm {kind!r}")


class BasicBlock(nn.Module):
    """3x3 (stride) -> 3x3, plus the shortcut (ResNet-18/34)."""

    def __init__(self, in_ch: int, planes: int, stride: int, cfg: BodyConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = make_norm(cfg.norm, planes, cfg.norm_eps)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = make_norm(cfg.norm, planes, cfg.norm_eps)
        self.downsample = _shortcut(in_ch, planes, stride, cfg)

    def forward(self, x: Tensor, overwrite_input: bool = False) -> Tensor:
        """``overwrite_input``: ``x`` is not needed afterwards (see :meth:`ResNet.forward`)."""
        out = conv_norm(self.conv1, self.bn1, x, relu=True)
        shortcut, owned = _shortcut_path(self.downsample, x, overwrite_input)
        return conv_norm(self.conv2, self.bn2, out, shortcut, relu=True, overwrite_residual=owned)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (groups) -> 1x1 (x4 channels), plus the shortcut (ResNet-50+, ResNeXt)."""

    def __init__(self, in_ch: int, planes: int, stride: int, cfg: BodyConfig) -> None:
        super().__init__()
        width = int(planes * cfg.width_per_group / 64) * cfg.groups
        out_ch = planes * 4
        stride_1x1, stride_3x3 = (stride, 1) if cfg.stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_ch, width, 1, stride_1x1, bias=False)
        self.bn1 = make_norm(cfg.norm, width, cfg.norm_eps)
        self.conv2 = nn.Conv2d(width, width, 3, stride_3x3, 1, groups=cfg.groups, bias=False)
        self.bn2 = make_norm(cfg.norm, width, cfg.norm_eps)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = make_norm(cfg.norm, out_ch, cfg.norm_eps)
        self.downsample = _shortcut(in_ch, out_ch, stride, cfg)

    def forward(self, x: Tensor, overwrite_input: bool = False) -> Tensor:
        """``overwrite_input``: ``x`` is not needed afterwards (see :meth:`ResNet.forward`)."""
        out = conv_norm(self.conv1, self.bn1, x, relu=True)
        out = conv_norm(self.conv2, self.bn2, out, relu=True)
        shortcut, owned = _shortcut_path(self.downsample, x, overwrite_input)
        return conv_norm(self.conv3, self.bn3, out, shortcut, relu=True, overwrite_residual=owned)


def _shortcut_path(
    downsample: nn.Sequential | None, x: Tensor, overwrite_input: bool
) -> tuple[Tensor, bool]:
    """The block's shortcut, and whether the block may overwrite it: a projection is a new
    map; the identity is the input itself, the block's only when ``overwrite_input``."""
    if downsample is None:
        return x, overwrite_input
    conv, norm = downsample
    return conv_norm(cast(nn.Conv2d, conv), norm, x), True


def _shortcut(in_ch: int, out_ch: int, stride: int, cfg: BodyConfig) -> nn.Sequential | None:
    if in_ch == out_ch and stride == 1:
        return None
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
        make_norm(cfg.norm, out_ch, cfg.norm_eps),
    )


class ResNet(nn.Module):
    """Stem (7x7/2 conv, norm, ReLU, 3x3/2 max-pool) and stages ``layer1..layer4``.

    ``forward`` returns ``[res2, res3, res4, res5]``, shapes ``(N, C_i, H / s_i, W / s_i)``
    with ``s = 4, 8, 16, 32`` and ``C = cfg.out_channels``.
    """

    def __init__(self, cfg: BodyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = make_norm(cfg.norm, 64, cfg.norm_eps)
        block = Bottleneck if cfg.bottleneck else BasicBlock
        in_ch = 64
        for i, blocks in enumerate(cfg.stage_blocks):
            planes = 64 * 2**i
            layers = []
            for b in range(blocks):
                stride = 2 if (b == 0 and i > 0) else 1
                layers.append(block(in_ch, planes, stride, cfg))
                in_ch = cfg.out_channels[i]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # He init, for training from scratch
                init.kaiming_normal_fan_out_(module.weight)
        self.freeze(cfg.freeze_at)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i}") for i in range(1, 5)]

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients for the stem (``freeze_at >= 1``) and stages ``< freeze_at``."""
        frozen: list[nn.Module] = [self.conv1, self.bn1] if freeze_at >= 1 else []
        frozen += self.stages[: max(freeze_at - 1, 0)]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = conv_norm(self.conv1, self.bn1, x, relu=True)
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        outputs = []
        for stage in self.stages:
            # A block's input is its predecessor's output, needed by nothing else once the
            # block has run: the block may add its residual branch into it in place.
            for k, block in enumerate(stage):
                x = block(x, overwrite_input=k > 0)
            outputs.append(x)
        return outputs
