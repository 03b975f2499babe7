"""The model :func:`fasterrcnn.create_model` returns: the network plus the engine's
conveniences for files, arrays and class names."""

from __future__ import annotations

from typing import overload

import numpy as np

from fasterrcnn.data.transforms import ImageBatch, make_batch
from fasterrcnn.engine.detections import Detections
from fasterrcnn.engine.loader import ImageSource
from fasterrcnn.engine.predict import predict
from fasterrcnn.modeling.faster_rcnn import FasterRCNN


class Detector(FasterRCNN):
    """A :class:`~fasterrcnn.modeling.faster_rcnn.FasterRCNN` (same parameters, same tensor
    ``forward``) with :meth:`predict` on image paths and arrays."""

    def preprocess(self, images: list[np.ndarray]) -> ImageBatch:
        """HxWx3 uint8 RGB arrays -> an :class:`ImageBatch` on the model's device."""
        return make_batch(images, self.config.input).to(self.device)

    @overload
    def predict(
        self,
        source: ImageSource,
        *,
        channels: str = ...,
        score_threshold: float | None = ...,
        return_proposals: bool = ...,
        batch_size: int = ...,
    ) -> Detections: ...
    @overload
    def predict(
        self,
        source: list[ImageSource],
        *,
        channels: str = ...,
        score_threshold: float | None = ...,
        return_proposals: bool = ...,
        batch_size: int = ...,
    ) -> list[Detections]: ...
    def predict(
        self,
        source: ImageSource | list[ImageSource],
        *,
        channels: str = "RGB",
        score_threshold: float | None = None,
        return_proposals: bool = False,
        batch_size: int = 1,
    ) -> Detections | list[Detections]:
        """Detect objects in an image path, an HxWx3 uint8 array (``channels`` "RGB" or
        "BGR"), or a list of them. See :func:`fasterrcnn.engine.predict.predict`."""
        return predict(
            self,
            source,
            channels=channels,
            score_threshold=score_threshold,
            return_proposals=return_proposals,
            batch_size=batch_size,
        )
