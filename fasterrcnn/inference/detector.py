"""The model :func:`fasterrcnn.create_model` returns: the network plus the conveniences of
inference for files, arrays and class names."""

from __future__ import annotations

import numpy as np

from fasterrcnn.data.transforms import ImageBatch, make_batch
from fasterrcnn.inference import predict as _predict
from fasterrcnn.modeling.faster_rcnn import FasterRCNN


class Detector(FasterRCNN):
    """A :class:`~fasterrcnn.modeling.faster_rcnn.FasterRCNN` (same parameters, same tensor
    ``forward``) with :meth:`predict` on image paths, arrays and lists of them."""

    # model.predict(source, ...) is fasterrcnn.inference.predict.predict(model, source, ...).
    predict = _predict.predict

    def preprocess(self, images: list[np.ndarray]) -> ImageBatch:
        """HxWx3 uint8 RGB arrays -> an :class:`ImageBatch` on the model's device."""
        return make_batch(images, self.config.input).to(self.device)
