"""From the box predictor's raw outputs to detections in original-image pixels.

Shape shorthand: R RoIs of one image, C foreground classes, D detections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fasterrcnn.config import BoxHeadConfig, PostprocessConfig
from fasterrcnn.ops.boxes import clip_boxes, decode_boxes, nonempty_mask
from fasterrcnn.ops.groups import split_by_group
from fasterrcnn.ops.nms import batched_nms, top_per_image


@dataclass
class ImageDetections:
    """Detections of one image, best first: ``boxes`` Tensor[D, 4] (original pixels),
    ``scores`` Tensor[D], ``labels`` Tensor[D] int64 foreground class index (0..C-1)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


@dataclass
class BatchDetections:
    """Detections of a batch, image by image and best first within each image: ``boxes``
    Tensor[D, 4] (original pixels), ``scores`` Tensor[D], ``labels`` Tensor[D] int64
    foreground class index, ``batch_index`` Tensor[D] int64 the image of each."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    batch_index: Tensor

    def per_image(self, num_images: int) -> list[ImageDetections]:
        """The detections of each image (views; one host synchronisation for the counts)."""
        fields = (self.boxes, self.scores, self.labels)
        return [ImageDetections(*p) for p in split_by_group(self.batch_index, num_images, *fields)]


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
        image_sizes: Tensor,
        original_sizes: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-class scores Tensor[R, C], boxes Tensor[R, C, 4] in original pixels, and the
        same boxes in network pixels (before rescaling). ``rois`` Tensor[R, 4] in network
        pixels; ``image_sizes`` and ``original_sizes`` Tensor[R, 2] (or [2]), the (h, w) of
        each RoI's image."""
        scores, deltas = foreground(class_logits, box_deltas, self.head)
        coder = self.head.box_coder
        boxes = decode_boxes(rois, deltas, coder.weights, coder.clamp_value)
        image_sizes = image_sizes.to(boxes.dtype).expand(boxes.shape[0], 2)[:, None, :]
        original_sizes = original_sizes.to(boxes.dtype).expand(boxes.shape[0], 2)[:, None, :]
        if self.cfg.clip_frame == "network":
            boxes = clip_boxes(boxes, image_sizes)
        net_boxes = boxes
        ratio = (original_sizes / image_sizes).flip(-1)  # (x, y) factors
        boxes = boxes * ratio.repeat(1, 1, 2)
        if self.cfg.clip_frame == "original":
            boxes = clip_boxes(boxes, original_sizes)
        return scores, boxes, net_boxes

    def __call__(
        self,
        class_logits: Tensor,
        box_deltas: Tensor,
        rois: Tensor,
        image_sizes: Tensor,
        original_sizes: Tensor,
    ) -> BatchDetections:
        """``class_logits`` Tensor[R, K], ``box_deltas`` Tensor[R, C or K, 4], ``rois``
        Tensor[R, 5] ``(batch_index, x1, y1, x2, y2)`` in network pixels, image by image;
        ``image_sizes`` and ``original_sizes`` Tensor[N, 2], (h, w) of each image."""
        cfg = self.cfg
        image = rois[:, 0].to(torch.int64)
        scores, boxes, net_boxes = self.class_boxes(
            class_logits, box_deltas, rois[:, 1:], image_sizes[image], original_sizes[image]
        )
        candidate = scores > cfg.score_threshold
        if cfg.min_size is not None:
            candidate = candidate & nonempty_mask(net_boxes, cfg.min_size)
        roi, label = torch.nonzero(candidate, as_tuple=True)
        boxes, scores, image = boxes[roi, label], scores[roi, label], image[roi]
        groups = image * candidate.shape[1] + label
        keep = batched_nms(boxes, scores, groups, cfg.nms_threshold)
        keep = top_per_image(keep, image[keep], cfg.max_detections, image_sizes.shape[0])
        boxes, scores, label, image = boxes[keep], scores[keep], label[keep], image[keep]
        if cfg.reclip_original:
            boxes = clip_boxes(boxes, original_sizes[image].to(boxes.dtype))
            keep = torch.nonzero(nonempty_mask(boxes)).flatten()
            boxes, scores, label, image = boxes[keep], scores[keep], label[keep], image[keep]
        return BatchDetections(boxes, scores, label, image)
