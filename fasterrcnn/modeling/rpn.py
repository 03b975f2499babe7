"""Region proposal network: anchors, the shared conv head, and proposal selection.

Shape shorthand: N images, L pyramid levels, Hi x Wi the size of level i, A anchors per
location, R proposals kept per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasterrcnn.config import AnchorConfig, RPNConfig
from fasterrcnn.modeling import init
from fasterrcnn.ops.anchors import cell_anchors, grid_anchors
from fasterrcnn.ops.boxes import clip_boxes, decode_boxes, nonempty_mask
from fasterrcnn.ops.nms import batched_nms


@dataclass
class Proposals:
    """The RPN's output for one image: R boxes in network-input pixels, best first.

    ``boxes`` Tensor[R, 4]; ``logits`` Tensor[R] the ranking logit (the foreground logit);
    ``scores`` Tensor[R] objectness probability; ``levels`` Tensor[R] int64, 0 = P2.
    """

    boxes: Tensor
    logits: Tensor
    scores: Tensor
    levels: Tensor


class AnchorGenerator(nn.Module):
    """Anchors for every level of a padded batch, per :class:`AnchorConfig`."""

    def __init__(self, cfg: AnchorConfig, strides: tuple[int, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.strides = strides
        self.reset_buffers()

    def reset_buffers(self, device: torch.device | str | None = None) -> None:
        """(Re)compute the cell anchors of every level (buffers outside the state dict)."""
        cfg = self.cfg
        for level, size in enumerate(cfg.sizes):
            cells = cell_anchors((size,), cfg.ratios, cfg.shape_rule, cfg.legacy_base_size)
            self.register_buffer(f"cells_{level}", cells.to(device), persistent=False)

    @property
    def num_anchors(self) -> int:
        return len(self.cfg.ratios)

    def forward(
        self, feature_sizes: list[tuple[int, int]], padded_size: tuple[int, int]
    ) -> list[Tensor]:
        """Tensor[Hi * Wi * A, 4] per level, in (y, x, anchor) order."""
        anchors = []
        for level, (grid, nominal) in enumerate(zip(feature_sizes, self.strides, strict=True)):
            if self.cfg.stride_rule == "padded_size_div":
                stride = (padded_size[0] // grid[0], padded_size[1] // grid[1])
            else:
                stride = (nominal, nominal)
            if self.cfg.shape_rule == "legacy_plus_one":
                shift = self.cfg.center_offset * self.cfg.legacy_base_size
                offset = (shift, shift)
            else:
                offset = (self.cfg.center_offset * stride[0], self.cfg.center_offset * stride[1])
            cells = getattr(self, f"cells_{level}")
            anchors.append(grid_anchors(cells, grid, stride, offset))
        return anchors


class RPNHead(nn.Module):
    """Shared 3x3 conv + ReLU, then 1x1 convs to objectness and box deltas at each level.

    ``objectness``: (N, A * K, Hi, Wi) with K = 1 (sigmoid) or 2 (softmax, bg then fg);
    ``deltas``: (N, A * 4, Hi, Wi), channel ``4a + j``.
    """

    def __init__(self, channels: int, num_anchors: int, logits_per_anchor: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness = nn.Conv2d(channels, num_anchors * logits_per_anchor, 1)
        self.deltas = nn.Conv2d(channels, num_anchors * 4, 1)
        for conv in (self.conv, self.objectness, self.deltas):
            init.normal_(conv.weight, std=0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        objectness, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x), inplace=True)
            objectness.append(self.objectness(t))
            deltas.append(self.deltas(t))
        return objectness, deltas


@dataclass
class RPNOutput:
    """Raw RPN predictions, flattened in (y, x, anchor) order, and the selected proposals.

    ``anchors[i]`` Tensor[Hi*Wi*A, 4]; ``objectness[i]`` Tensor[N, Hi*Wi*A, K];
    ``deltas[i]`` Tensor[N, Hi*Wi*A, 4]; ``proposals`` one :class:`Proposals` per image.
    """

    anchors: list[Tensor]
    objectness: list[Tensor]
    deltas: list[Tensor]
    proposals: list[Proposals]


class RPN(nn.Module):
    def __init__(
        self, cfg: RPNConfig, anchors: AnchorConfig, channels: int, strides: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.anchor_generator = AnchorGenerator(anchors, strides)
        self.logits_per_anchor = 2 if cfg.objectness == "softmax2" else 1
        self.head = RPNHead(channels, self.anchor_generator.num_anchors, self.logits_per_anchor)

    def forward(
        self,
        features: list[Tensor],
        image_sizes: list[tuple[int, int]],
        padded_size: tuple[int, int],
    ) -> RPNOutput:
        """``features``: [P2..P6] of a batch padded to ``padded_size``; ``image_sizes``: (h, w)
        of each unpadded network input."""
        raw_objectness, raw_deltas = self.head(features)
        anchors = self.anchor_generator([tuple(f.shape[-2:]) for f in features], padded_size)
        k = self.logits_per_anchor
        # Float32 from here on, whatever the head ran in: ranking and decoding decide boxes.
        objectness = [_flatten(o, k).float() for o in raw_objectness]  # (N, Hi*Wi*A, K)
        deltas = [_flatten(d, 4).float() for d in raw_deltas]  # (N, Hi*Wi*A, 4)
        proposals = [
            self.select_proposals(
                [o[i] for o in objectness], [d[i] for d in deltas], anchors, image_sizes[i]
            )
            for i in range(len(image_sizes))
        ]
        return RPNOutput(anchors, objectness, deltas, proposals)

    @torch.no_grad()
    def select_proposals(
        self,
        objectness: list[Tensor],
        deltas: list[Tensor],
        anchors: list[Tensor],
        image_size: tuple[int, int],
    ) -> Proposals:
        """Per level top-k by logit, decode, clip, drop small boxes, NMS per level, top-R."""
        cfg = self.cfg
        pre_top = cfg.pre_nms_top_n_train if self.training else cfg.pre_nms_top_n_test
        post_top = cfg.post_nms_top_n_train if self.training else cfg.post_nms_top_n_test
        per_level: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        for level, (obj, dlt, anc) in enumerate(zip(objectness, deltas, anchors, strict=True)):
            fg_logit = obj[:, -1]
            top = torch.topk(fg_logit, min(pre_top, fg_logit.numel())).indices
            coder = cfg.box_coder
            per_level.append((
                decode_boxes(anc[top], dlt[top], coder.weights, coder.clamp_value),
                fg_logit[top],
                self._probability(obj[top]),
                torch.full_like(top, level),
            ))  # fmt: skip
        boxes, logits, scores, levels = (torch.cat(parts) for parts in zip(*per_level, strict=True))
        boxes = clip_boxes(boxes, image_size)

        keep = nonempty_mask(boxes, cfg.min_size)
        boxes, logits, scores, levels = boxes[keep], logits[keep], scores[keep], levels[keep]
        nms_boxes = boxes
        if cfg.nms_plus_one:  # IoU of (x1, y1, x2 + 1, y2 + 1) == IoU with "+1" widths
            nms_boxes = boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
        keep = batched_nms(nms_boxes, logits, levels, cfg.nms_threshold)[:post_top]
        return Proposals(boxes[keep], logits[keep], scores[keep], levels[keep])

    def _probability(self, logits: Tensor) -> Tensor:
        """Tensor[M, K] logits -> Tensor[M] foreground probability."""
        if self.logits_per_anchor == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=1)[:, 1]


def _flatten(x: Tensor, k: int) -> Tensor:
    """(N, K*A or A*K, H, W) -> (N, H*W*A, K).

    Objectness with K = 2 is laid out (K, A) (all bg logits, then all fg); deltas (K = 4)
    are laid out (A, K).
    """
    n, c, h, w = x.shape
    a = c // k
    if k == 4:
        x = x.view(n, a, k, h, w).permute(0, 3, 4, 1, 2)
    else:
        x = x.view(n, k, a, h, w).permute(0, 3, 4, 2, 1)
    return x.reshape(n, h * w * a, k)
