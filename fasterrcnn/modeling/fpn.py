"""Feature pyramid network: res2..res5 -> P2..P6 (strides 4..64), and the full backbone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasterrcnn.config import BodyConfig, FPNConfig
from fasterrcnn.modeling.backbone import ResNet
from fasterrcnn.ops import fused


class ConvNorm(nn.Module):
    """A conv, optionally followed by a batch norm (``conv.*``, ``norm.*``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, bias: bool, norm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias)
        self.norm = nn.BatchNorm2d(out_ch) if norm else None
        nn.init.kaiming_uniform_(self.conv.weight, a=1)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(
        self, x: Tensor, residual: Tensor | None = None, overwrite_residual: bool = False
    ) -> Tensor:
        """The conv (and norm), plus ``residual`` when given (written into ``residual``
        where that is faster and the caller allows it)."""
        if self.norm is None:
            return fused.conv2d(
                x, self.conv, residual=residual, overwrite_residual=overwrite_residual
            )
        x = self.norm(self.conv(x))
        return x if residual is None else x + residual


class FPN(nn.Module):
    """Top-down pyramid: ``lateral_i = lat_i(res_i)``, ``m5 = lateral_5``,
    ``m_i = lateral_i + up(m_{i+1})``, ``P_i = out_i(m_i)``, ``P6 = P5[::2, ::2]``.

    ``lateral_convs[k]`` / ``output_convs[k]`` belong to level ``k + 2``.
    """

    def __init__(self, in_channels: tuple[int, ...], cfg: FPNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        norm = cfg.norm == "bn"
        ch = cfg.out_channels
        self.lateral_convs = nn.ModuleList(
            ConvNorm(c, ch, 1, cfg.conv_bias, norm) for c in in_channels
        )
        self.output_convs = nn.ModuleList(
            ConvNorm(ch, ch, 3, cfg.conv_bias, norm) for _ in in_channels
        )

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        merged = self.lateral_convs[-1](features[-1])
        outputs = [self.output_convs[-1](merged)]
        for k in range(len(features) - 2, -1, -1):
            upsampled = self._upsample(merged, (features[k].shape[-2], features[k].shape[-1]))
            merged = self.lateral_convs[k](features[k], upsampled, overwrite_residual=True)
            outputs.insert(0, self.output_convs[k](merged))
        outputs.append(F.max_pool2d(outputs[-1], kernel_size=1, stride=2))
        return outputs

    def _upsample(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        if self.cfg.upsample == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Backbone(nn.Module):
    """Body + FPN: ``(N, 3, H, W)`` -> ``[P2, P3, P4, P5, P6]``, each ``(N, 256, H/s, W/s)``."""

    strides = (4, 8, 16, 32, 64)

    def __init__(self, body: BodyConfig, fpn: FPNConfig) -> None:
        super().__init__()
        self.body = ResNet(body)
        self.fpn = FPN(body.out_channels, fpn)

    def forward(self, images: Tensor) -> list[Tensor]:
        # Channels-last runs the convolutions faster and lets RoIAlign read pixels in place.
        return self.fpn(self.body(images.contiguous(memory_format=torch.channels_last)))
