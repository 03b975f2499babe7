"""From the box predictor's raw outputs to detections in original-image pixels.

Shape shorthand: R RoIs of one image, C foreground classes, D detections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fasterrcnn.config import BoxHeadConfig, PostprocessConfig
from fasterrcnn.ops.boxes import clip_boxes, decode_boxes, nonempty_mask, scale_boxes
from fasterrcnn.ops.nms import batched_nms


@dataclass
class ImageDetections:
    """Detections of one image, best first: ``boxes`` Tensor[D, 4] (original pixels),
    ``scores`` Tensor[D], ``labels`` Tensor[D] int64 foreground class index (0..C-1)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


def foreground(
    class_logits: Tensor, box_deltas: Tensor, cfg: BoxHeadConfig
) -> tuple[Tensor, Tensor]:
    """Softmax scores Tensor[R, C] and deltas Tensor[R, C, 4] of the foreground classes."""
    probs = torch.softmax(class_logits, dim=1)
    first = cfg.background == "first"
    scores = probs[:, 1:] if first else probs[:, :-1]
    if cfg.deltas_include_background:
        box_deltas = box_deltas[:, 1:] if first else box_deltas[:, :-1]
    return scores, box_deltas


class DetectionPostProcess:
    """Scores and class-specific boxes -> thresholded, per-class NMS'd top detections."""

    def __init__(self, head: BoxHeadConfig, cfg: PostprocessConfig) -> None:
        self.head = head
        self.cfg = cfg

    def class_boxes(
        self,
        class_logits: Tensor,
        box_deltas: Tensor,
        rois: Tensor,
        image_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-class scores Tensor[R, C], boxes Tensor[R, C, 4] in original pixels, and the
        same boxes in network pixels (before rescaling)."""
        scores, deltas = foreground(class_logits, box_deltas, self.head)
        coder = self.head.box_coder
        boxes = decode_boxes(rois, deltas, coder.weights, coder.clamp_value)
        if self.cfg.clip_frame == "network":
            boxes = clip_boxes(boxes, image_size)
        net_boxes = boxes
        ratio = torch.tensor(original_size, dtype=torch.float32) / torch.tensor(
            image_size, dtype=torch.float32
        )
        boxes = scale_boxes(boxes, (ratio[1].item(), ratio[0].item()))
        if self.cfg.clip_frame == "original":
            boxes = clip_boxes(boxes, original_size)
        return scores, boxes, net_boxes

    def __call__(
        self,
        class_logits: Tensor,
        box_deltas: Tensor,
        rois: Tensor,
        image_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> ImageDetections:
        """One image: ``class_logits`` Tensor[R, K], ``box_deltas`` Tensor[R, C or K, 4],
        ``rois`` Tensor[R, 4] in network pixels."""
        cfg = self.cfg
        scores, boxes, net_boxes = self.class_boxes(
            class_logits, box_deltas, rois, image_size, original_size
        )
        num_classes = scores.shape[1]
        labels = torch.arange(num_classes, device=scores.device).expand_as(scores)
        scores, labels = scores.reshape(-1), labels.reshape(-1)
        boxes, net_boxes = boxes.reshape(-1, 4), net_boxes.reshape(-1, 4)

        keep = scores > cfg.score_threshold
        if cfg.min_size is not None:
            keep &= nonempty_mask(net_boxes, cfg.min_size)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, cfg.nms_threshold)[: cfg.max_detections]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        if cfg.reclip_original:
            boxes = clip_boxes(boxes, original_size)
            keep = nonempty_mask(boxes)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        return ImageDetections(boxes, scores, labels)
