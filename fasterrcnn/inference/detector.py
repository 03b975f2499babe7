"""The model :func:`fasterrcnn.create_model` returns: the network plus the conveniences of
inference for files, arrays and class names."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from fasterrcnn.data.transforms import ImageBatch, make_batch
from fasterrcnn.inference import predict as _predict
from fasterrcnn.modeling.faster_rcnn import FasterRCNN
from fasterrcnn.modeling.postprocess import BatchDetections
from fasterrcnn.modeling.rpn import Proposals


class Detector(FasterRCNN):
    """A :class:`~fasterrcnn.modeling.faster_rcnn.FasterRCNN` (same parameters, same tensor
    ``forward``) with :meth:`predict` on image paths, arrays and lists of them; a
    :class:`~fasterrcnn.inference.protocol.BatchDetector` for the inference loop."""

    returns_proposals = True

    # model.predict(source, ...) is fasterrcnn.inference.predict.predict(model, source, ...).
    predict = _predict.predict

    def preprocess(self, images: list[np.ndarray]) -> ImageBatch:
        """HxWx3 uint8 RGB arrays -> an :class:`ImageBatch` on the model's device."""
        return make_batch(images, self.config.input).to(self.device)

    def detect_batch(
        self,
        images: Tensor,
        image_sizes: Tensor,
        original_sizes: Tensor,
        *,
        proposals: bool = False,
    ) -> tuple[BatchDetections, Proposals | None]:
        """The forward pass and post-processing of a padded batch (see
        :class:`~fasterrcnn.inference.protocol.BatchDetector`)."""
        raw = self(images, image_sizes)
        detections = self.postprocess_detections(raw, image_sizes, original_sizes)
        return detections, raw.rpn.proposals if proposals else None
