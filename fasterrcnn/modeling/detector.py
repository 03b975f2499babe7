"""Faster R-CNN with FPN: backbone -> RPN -> RoI heads, and the post-processing after it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np
import torch
from torch import Tensor, nn

from fasterrcnn.config import ModelConfig
from fasterrcnn.data.transforms import ImageBatch, make_batch
from fasterrcnn.modeling.fpn import Backbone
from fasterrcnn.modeling.postprocess import DetectionPostProcess, ImageDetections
from fasterrcnn.modeling.roi_heads import RoIHeads
from fasterrcnn.modeling.rpn import RPN, RPNOutput

if TYPE_CHECKING:
    from fasterrcnn.engine.predict import Detections, ImageSource


@dataclass
class RawOutputs:
    """Everything the network predicts for a batch, before post-processing.

    ``features``: [P2..P6]; ``rpn``: RPN predictions and per-image proposals;
    ``rois``: Tensor[R, 5] ``(batch_index, x1, y1, x2, y2)``, the proposals of all images;
    ``class_logits``: Tensor[R, K]; ``box_deltas``: Tensor[R, C or K, 4].
    """

    features: list[Tensor]
    rpn: RPNOutput
    rois: Tensor
    class_logits: Tensor
    box_deltas: Tensor


class FasterRCNN(nn.Module):
    """The detector. ``forward`` takes an :class:`ImageBatch` and returns :class:`RawOutputs`;
    :meth:`detect` adds post-processing; :meth:`predict` takes files or arrays."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.fpn.out_channels
        self.backbone = Backbone(config.body, config.fpn)
        strides = self.backbone.strides
        self.rpn = RPN(config.rpn, config.anchors, channels, strides)
        self.roi_heads = RoIHeads(config.pooler, config.box_head, channels, strides[:4])
        self.postprocess = DetectionPostProcess(config.box_head, config.postprocess)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, batch: ImageBatch) -> RawOutputs:
        features = self.backbone(batch.tensor)
        rpn = self.rpn(features, batch.image_sizes, batch.padded_size)
        rois = torch.cat(
            [
                torch.cat([p.boxes.new_full((len(p.boxes), 1), i), p.boxes], dim=1)
                for i, p in enumerate(rpn.proposals)
            ]
        )
        class_logits, box_deltas = self.roi_heads(features[:4], rois)
        return RawOutputs(features, rpn, rois, class_logits, box_deltas)

    def preprocess(self, images: list[np.ndarray]) -> ImageBatch:
        """HxWx3 uint8 RGB arrays -> an :class:`ImageBatch` on the model's device."""
        return make_batch(images, self.config.input).to(self.device)

    @torch.inference_mode()
    def detect(self, batch: ImageBatch) -> tuple[list[ImageDetections], RawOutputs]:
        """Detections of each image of ``batch`` (original-image pixels), and the raw outputs."""
        raw = self(batch)
        detections = []
        start = 0
        for i, proposals in enumerate(raw.rpn.proposals):
            rows = slice(start, start + len(proposals.boxes))
            start = rows.stop
            detections.append(
                self.postprocess(
                    raw.class_logits[rows],
                    raw.box_deltas[rows],
                    proposals.boxes,
                    batch.image_sizes[i],
                    batch.original_sizes[i],
                )
            )
        return detections, raw

    @overload
    def predict(
        self,
        source: ImageSource,
        *,
        channels: str = ...,
        score_threshold: float | None = ...,
        return_proposals: bool = ...,
    ) -> Detections: ...
    @overload
    def predict(
        self,
        source: list[ImageSource],
        *,
        channels: str = ...,
        score_threshold: float | None = ...,
        return_proposals: bool = ...,
    ) -> list[Detections]: ...
    def predict(
        self,
        source: ImageSource | list[ImageSource],
        *,
        channels: str = "RGB",
        score_threshold: float | None = None,
        return_proposals: bool = False,
    ) -> Detections | list[Detections]:
        """Detect objects in an image path, an HxWx3 uint8 array (``channels`` "RGB" or
        "BGR"), or a list of them. See :func:`fasterrcnn.engine.predict.predict`."""
        from fasterrcnn.engine.predict import predict

        return predict(
            self,
            source,
            channels=channels,
            score_threshold=score_threshold,
            return_proposals=return_proposals,
        )
