"""Region proposal network: anchors, the shared conv head, and proposal selection.

Shape shorthand: N images, L pyramid levels, Hi x Wi the size of level i, A anchors per
location, R proposals kept per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fasterrcnn.config import AnchorConfig, RPNConfig
from fasterrcnn.modeling import init
from fasterrcnn.ops import fused
from fasterrcnn.ops.anchors import cell_anchors, grid_anchors
from fasterrcnn.ops.boxes import clip_boxes, decode_boxes, nonempty_mask
from fasterrcnn.ops.groups import split_by_group
from fasterrcnn.ops.nms import batched_nms, top_per_image
from fasterrcnn.ops.shapes import at_most


@dataclass
class Proposals:
    """The RPN's proposals for a batch, in network-input pixels: image by image, best first.

    ``boxes`` Tensor[P, 4]; ``logits`` Tensor[P] the ranking logit (the foreground logit);
    ``scores`` Tensor[P] objectness probability; ``levels`` Tensor[P] int64, 0 = P2;
    ``batch_index`` Tensor[P] int64, the image each belongs to (non-decreasing).
    """

    boxes: Tensor
    logits: Tensor
    scores: Tensor
    levels: Tensor
    batch_index: Tensor

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def rois(self) -> Tensor:
        """Tensor[P, 5] ``(batch_index, x1, y1, x2, y2)``."""
        return torch.cat([self.batch_index[:, None].to(self.boxes.dtype), self.boxes], dim=1)

    def per_image(self, num_images: int) -> list[Proposals]:
        """The proposals of each image (views; one host synchronisation for the counts)."""
        fields = (self.boxes, self.logits, self.scores, self.levels, self.batch_index)
        return [
            Proposals(*parts) for parts in split_by_group(self.batch_index, num_images, *fields)
        ]


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
            t = fused.conv2d(x, self.conv, relu=True)
            objectness.append(self.objectness(t))
            deltas.append(self.deltas(t))
        return objectness, deltas


@dataclass
class RPNOutput:
    """Raw RPN predictions, flattened in (y, x, anchor) order, and the selected proposals.

    ``anchors[i]`` Tensor[Hi*Wi*A, 4]; ``objectness[i]`` Tensor[N, Hi*Wi*A, K];
    ``deltas[i]`` Tensor[N, Hi*Wi*A, 4]; ``proposals`` those of all images.
    """

    anchors: list[Tensor]
    objectness: list[Tensor]
    deltas: list[Tensor]
    proposals: Proposals


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
        image_sizes: Tensor,
        padded_size: tuple[int, int],
    ) -> RPNOutput:
        """``features``: [P2..P6] of a batch padded to ``padded_size``; ``image_sizes``:
        Tensor[N, 2], the (h, w) of each unpadded network input."""
        raw_objectness, raw_deltas = self.head(features)
        anchors = self.anchor_generator([tuple(f.shape[-2:]) for f in features], padded_size)
        k = self.logits_per_anchor
        # Float32 from here on, whatever the head ran in: ranking and decoding decide boxes.
        objectness = [_flatten(o, k).float() for o in raw_objectness]  # (N, Hi*Wi*A, K)
        deltas = [_flatten(d, 4).float() for d in raw_deltas]  # (N, Hi*Wi*A, 4)
        proposals = self.select_proposals(objectness, deltas, anchors, image_sizes)
        return RPNOutput(anchors, objectness, deltas, proposals)

    @torch.no_grad()
    def select_proposals(
        self,
        objectness: list[Tensor],
        deltas: list[Tensor],
        anchors: list[Tensor],
        image_sizes: Tensor,
    ) -> Proposals:
        """Per image: per level top-k by logit, decode, clip, drop small boxes, NMS per level,
        top-R. All images at once: ``objectness[i]`` Tensor[N, Mi, K], ``deltas[i]``
        Tensor[N, Mi, 4], ``anchors[i]`` Tensor[Mi, 4], ``image_sizes`` Tensor[N, 2]."""
        cfg = self.cfg
        pre_top = cfg.pre_nms_top_n_train if self.training else cfg.pre_nms_top_n_test
        post_top = cfg.post_nms_top_n_train if self.training else cfg.post_nms_top_n_test
        coder = cfg.box_coder
        boxes, logits, scores, levels = [], [], [], []
        for level, (obj, dlt, anc) in enumerate(zip(objectness, deltas, anchors, strict=True)):
            n, m, k = obj.shape
            fg_logit, top = torch.topk(obj[..., -1], at_most(m, pre_top), dim=1)  # (N, k')
            top_deltas = dlt.gather(1, top[..., None].expand(-1, -1, 4))
            boxes.append(decode_boxes(anc[top].view(-1, 4), top_deltas.view(-1, 4), coder.weights, coder.clamp_value).view(n, -1, 4))  # fmt: skip
            logits.append(fg_logit)
            scores.append(self._probability(obj.gather(1, top[..., None].expand(-1, -1, k))))
            levels.append(torch.full_like(top, level))
        all_boxes = clip_boxes(torch.cat(boxes, dim=1), image_sizes[:, None, :])  # (N, T, 4)
        image, index = torch.nonzero(nonempty_mask(all_boxes, cfg.min_size), as_tuple=True)
        flat_boxes = all_boxes[image, index]
        flat_logits = torch.cat(logits, dim=1)[image, index]
        flat_levels = torch.cat(levels, dim=1)[image, index]
        nms_boxes = flat_boxes
        if cfg.nms_plus_one:  # IoU of (x1, y1, x2 + 1, y2 + 1) == IoU with "+1" widths
            nms_boxes = flat_boxes + flat_boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
        groups = image * len(objectness) + flat_levels
        keep = batched_nms(nms_boxes, flat_logits, groups, cfg.nms_threshold)
        keep = top_per_image(keep, image[keep], post_top, image_sizes.shape[0])
        return Proposals(
            flat_boxes[keep],
            flat_logits[keep],
            torch.cat(scores, dim=1)[image[keep], index[keep]],
            flat_levels[keep],
            image[keep],
        )

    def _probability(self, logits: Tensor) -> Tensor:
        """Tensor[..., K] logits -> Tensor[...] foreground probability."""
        if self.logits_per_anchor == 1:
            return torch.sigmoid(logits[..., 0])
        return torch.softmax(logits, dim=-1)[..., 1]


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
