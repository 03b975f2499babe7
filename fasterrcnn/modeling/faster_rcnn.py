"""Faster R-CNN with FPN: backbone -> RPN -> RoI heads, and the post-processing after it.

The network is a pure tensor module: a padded image batch and the size of each image inside
the padding go in; raw predictions (:meth:`FasterRCNN.forward`) or per-image detection tensors
(:meth:`FasterRCNN.detect`) come out. Files, decoding, batching, numpy results and class names
belong to :mod:`fasterrcnn.inference`.

Shape shorthand: N images, Hp x Wp the padded input size, R RoIs over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn

from fasterrcnn.config import ModelConfig
from fasterrcnn.modeling.fpn import Backbone
from fasterrcnn.modeling.postprocess import BatchDetections, DetectionPostProcess, ImageDetections
from fasterrcnn.modeling.precision import INFERENCE_PRECISIONS, Precision, autocast_dtype
from fasterrcnn.modeling.roi_heads import RoIHeads
from fasterrcnn.modeling.roi_training import RoISamples, roi_losses, sample_rois
from fasterrcnn.modeling.rpn import RPN, Proposals, RPNOutput
from fasterrcnn.modeling.rpn_training import rpn_losses
from fasterrcnn.modeling.targets import Targets

ImageSize = tuple[int, int]
ModelT = TypeVar("ModelT", bound="FasterRCNN")


@dataclass
class RawOutputs:
    """Everything the network predicts for a batch, before post-processing.

    ``features``: [P2..P6]; ``rpn``: RPN predictions and the proposals of all images;
    ``rois``: Tensor[R, 5] ``(batch_index, x1, y1, x2, y2)``, the proposals of all images
    (in training, the sampled ones); ``class_logits``: Tensor[R, K]; ``box_deltas``:
    Tensor[R, C or K, 4]; ``roi_samples``: in training, the sampled RoIs' targets.
    """

    features: list[Tensor]
    rpn: RPNOutput
    rois: Tensor
    class_logits: Tensor
    box_deltas: Tensor
    roi_samples: RoISamples | None = None


class FasterRCNN(nn.Module):
    """The detector network.

    ``forward(images, image_sizes)``: ``images`` Tensor[N, 3, Hp, Wp] normalized and padded at
    the bottom/right (see :mod:`fasterrcnn.data.transforms`), ``image_sizes`` the (h, w) of each
    image inside the padding -> :class:`RawOutputs`. :meth:`detect` adds post-processing.

    Training: ``forward(images, image_sizes, targets)`` in train mode runs the box head on RoIs
    sampled against ``targets`` (one :class:`Targets` per image); :meth:`losses` turns its
    outputs into the four losses.
    """

    returns_proposals = True  # detect_batch can return the RPN's proposals

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.fpn.out_channels
        self.backbone = Backbone(config.body, config.fpn)
        strides = self.backbone.strides
        self.rpn = RPN(config.rpn, config.anchors, channels, strides)
        self.roi_heads = RoIHeads(config.pooler, config.box_head, channels, strides[:4])
        self.postprocess = DetectionPostProcess(config.box_head, config.postprocess)
        # The convolutions' and linear layers' dtype under autocast (bfloat16), or None for
        # float32 throughout; see set_precision.
        self.compute_dtype: torch.dtype | None = None

    @classmethod
    def skeleton(cls: type[ModelT], config: ModelConfig) -> ModelT:
        """The model on the meta device: its parameter names and shapes, without memory or
        random initialisation (for weights loaded next, or where only shapes matter)."""
        with torch.device("meta"):
            return cls(config)

    def set_precision(self, precision: Precision) -> FasterRCNN:
        """``"fp32"``, or ``"bf16"``: convolutions and linear layers in bfloat16 (autocast;
        the parameters stay float32), while every stage where rounding decides boxes stays in
        float32: the heads' outputs are cast back before anchors are decoded, proposals and
        detections are selected and NMS runs, and RoI levels and sample positions are
        computed in float32."""
        if precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
        self.compute_dtype = autocast_dtype(precision)
        return self

    @property
    def precision(self) -> Precision:
        return "bf16" if self.compute_dtype == torch.bfloat16 else "fp32"

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(
        self,
        images: Tensor,
        image_sizes: Sequence[ImageSize] | Tensor,
        targets: Sequence[Targets] | None = None,
    ) -> RawOutputs:
        if self.compute_dtype is None:  # float32, or whatever autocast the caller set
            return self._forward(images, image_sizes, targets)
        with torch.autocast(images.device.type, dtype=self.compute_dtype):
            return self._forward(images, image_sizes, targets)

    def _forward(
        self,
        images: Tensor,
        image_sizes: Sequence[ImageSize] | Tensor,
        targets: Sequence[Targets] | None,
    ) -> RawOutputs:
        features = self.backbone(images)
        padded_size = (images.shape[-2], images.shape[-1])
        sizes = size_tensor(image_sizes, images.device)
        rpn = self.rpn(features, sizes, padded_size)
        samples = None
        if targets is None:
            rois = rpn.proposals.rois()
        else:
            per_image = [p.boxes for p in rpn.proposals.per_image(images.shape[0])]
            samples = sample_rois(per_image, targets, self.config.box_head)
            rois = samples.rois
        class_logits, box_deltas = self.roi_heads(features[:4], rois)
        return RawOutputs(features, rpn, rois, class_logits, box_deltas, samples)

    def losses(self, raw: RawOutputs, targets: Sequence[Targets]) -> dict[str, Tensor]:
        """The RPN's and the RoI heads' losses for outputs of ``forward(..., targets)``:
        ``rpn_objectness``, ``rpn_box``, ``roi_classification``, ``roi_box`` (scalars)."""
        if raw.roi_samples is None:
            raise ValueError("losses need the outputs of forward(images, image_sizes, targets)")
        cfg = self.config
        return {
            **rpn_losses(raw.rpn, targets, cfg.rpn),
            **roi_losses(raw.class_logits, raw.box_deltas, raw.roi_samples, cfg.box_head),
        }

    def postprocess_detections(
        self,
        raw: RawOutputs,
        image_sizes: Sequence[ImageSize] | Tensor,
        original_sizes: Sequence[ImageSize] | Tensor | None = None,
    ) -> BatchDetections:
        """Detections of the batch, in ``original_sizes`` pixels (the network frame when not
        given); ``.per_image(N)`` splits them."""
        device = raw.rois.device
        sizes = size_tensor(image_sizes, device)
        originals = sizes if original_sizes is None else size_tensor(original_sizes, device)
        return self.postprocess(raw.class_logits, raw.box_deltas, raw.rois, sizes, originals)

    @torch.inference_mode()
    def detect(
        self,
        images: Tensor,
        image_sizes: Sequence[ImageSize] | Tensor,
        original_sizes: Sequence[ImageSize] | Tensor | None = None,
    ) -> list[ImageDetections]:
        """Forward and post-processing: one :class:`ImageDetections` per image."""
        detections, _ = self.detect_batch(images, image_sizes, original_sizes)
        return detections.per_image(images.shape[0])

    def detect_batch(
        self,
        images: Tensor,
        image_sizes: Sequence[ImageSize] | Tensor,
        original_sizes: Sequence[ImageSize] | Tensor | None = None,
        *,
        proposals: bool = False,
    ) -> tuple[BatchDetections, Proposals | None]:
        """Forward and post-processing of the whole batch: its detections (``.per_image(N)``
        splits them) and, when ``proposals``, the RPN's proposals of every image (the
        interface of :class:`~fasterrcnn.inference.protocol.BatchDetector`)."""
        raw = self(images, image_sizes)
        detections = self.postprocess_detections(raw, image_sizes, original_sizes)
        return detections, raw.rpn.proposals if proposals else None


def size_tensor(sizes: Sequence[ImageSize] | Tensor, device: torch.device) -> Tensor:
    """(h, w) per image as Tensor[N, 2] float32 on ``device``."""
    if isinstance(sizes, Tensor):
        return sizes.to(device=device, dtype=torch.float32)
    return torch.tensor(sizes, dtype=torch.float32, device=device).view(-1, 2)
