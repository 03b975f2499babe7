"""Second stage: multi-scale RoIAlign, the 2-FC box head and the box predictor.

Shape shorthand: R RoIs over the whole batch, C = num_classes foreground classes,
K = C + 1 logits (with the background), S = output_size of the pooler.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from fasterrcnn.config import BoxHeadConfig, RoIPoolerConfig
from fasterrcnn.modeling import init
from fasterrcnn.ops import fused
from fasterrcnn.ops.roi_align import roi_align


def assign_levels(boxes: Tensor, cfg: RoIPoolerConfig, min_level: int, max_level: int) -> Tensor:
    """Pyramid level of each box (Tensor[R, 4] -> Tensor[R] int64, absolute: 2 = P2)."""
    size = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    if cfg.level_epsilon_in_log:
        level = cfg.canonical_level + torch.log2(size / cfg.canonical_size + cfg.level_epsilon)
    else:
        level = cfg.canonical_level + torch.log2(size / cfg.canonical_size) + cfg.level_epsilon
    level = torch.floor(level)
    return level.clamp(min=min_level, max=max_level).to(torch.int64)


class MultiScaleRoIAlign(nn.Module):
    """Pools each RoI from the pyramid level its size selects.

    ``forward(features, rois)``: features [P_min..P_max] with strides ``strides``; rois
    Tensor[R, 5] ``(batch_index, x1, y1, x2, y2)`` -> Tensor[R, 256, S, S].
    """

    def __init__(self, cfg: RoIPoolerConfig, strides: tuple[int, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.strides = strides
        self.min_level = int(math.log2(strides[0]))
        self.max_level = int(math.log2(strides[-1]))

    def forward(self, features: list[Tensor], rois: Tensor) -> Tensor:
        cfg = self.cfg
        levels = assign_levels(rois[:, 1:], cfg, self.min_level, self.max_level) - self.min_level
        pooled, positions = [], []
        for level, (feature, stride) in enumerate(zip(features, self.strides, strict=True)):
            index = torch.nonzero(levels == level).squeeze(1)
            if index.numel() == 0 and not torch.jit.is_tracing():  # a traced graph keeps all
                continue
            pooled.append(
                roi_align(
                    feature,
                    rois[index],
                    cfg.output_size,
                    1.0 / stride,
                    cfg.sampling_ratio,
                    cfg.aligned,
                    cfg.border,
                )
            )
            positions.append(index)
        if not pooled:  # no RoI at all
            size = cfg.output_size
            return features[0].new_zeros((0, features[0].shape[1], size, size))
        # The RoIs pooled level by level, then put back in their own order with one gather
        # (not one full-size scatter per level).
        return torch.cat(pooled)[torch.argsort(torch.cat(positions))]


class BoxHead(nn.Module):
    """Flatten (R, 256, S, S) -> fc1 -> ReLU -> fc2 -> ReLU -> (R, fc_dim)."""

    def __init__(self, in_features: int, fc_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, fc_dim)
        self.fc2 = nn.Linear(fc_dim, fc_dim)
        for fc in (self.fc1, self.fc2):
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.zeros_(fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return fused.linear_relu(fused.linear_relu(x.flatten(1), self.fc1), self.fc2)


class BoxPredictor(nn.Module):
    """Class logits Tensor[R, K] and class-specific deltas Tensor[R, C or K, 4]."""

    def __init__(self, fc_dim: int, cfg: BoxHeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        num_logits = cfg.num_classes + 1
        num_boxes = num_logits if cfg.deltas_include_background else cfg.num_classes
        self.cls_score = nn.Linear(fc_dim, num_logits)
        self.bbox_pred = nn.Linear(fc_dim, num_boxes * 4)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small random weights, zero biases: every class starts equally likely."""
        init.normal_(self.cls_score.weight, std=0.01)
        init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x).view(x.shape[0], -1, 4)


class RoIHeads(nn.Module):
    """Pooler + box head + predictor: ``(features, rois) -> (class_logits, box_deltas)``."""

    def __init__(
        self, pooler: RoIPoolerConfig, head: BoxHeadConfig, channels: int, strides: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.pooler = MultiScaleRoIAlign(pooler, strides)
        self.box_head = BoxHead(channels * pooler.output_size**2, head.fc_dim)
        self.predictor = BoxPredictor(head.fc_dim, head)

    def forward(self, features: list[Tensor], rois: Tensor) -> tuple[Tensor, Tensor]:
        """Float32 logits and deltas, whatever the layers ran in."""
        logits, deltas = self.predictor(self.box_head(self.pooler(features, rois)))
        return logits.float(), deltas.float()
