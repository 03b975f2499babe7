"""What the inference loop runs: one interface for the PyTorch model and exported files.

The network (:class:`~fasterrcnn.modeling.faster_rcnn.FasterRCNN`, and so the
:class:`~fasterrcnn.inference.detector.Detector`) implements it, and so does the runtime of
an exported file (:class:`~fasterrcnn.export.runtimes.ExportedModel`), so that decoding,
resizing, batching, results, drawing and evaluation are the same whatever runs the network.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from fasterrcnn.config import ModelConfig
from fasterrcnn.modeling.postprocess import BatchDetections
from fasterrcnn.modeling.rpn import Proposals


class BatchDetector(Protocol):
    """A detector that takes the inference loop's padded batch.

    ``config``: the model's configuration (input settings and class table); ``device``: where
    the batch goes; ``returns_proposals``: whether :meth:`detect_batch` can return the RPN's
    proposals.
    """

    @property
    def config(self) -> ModelConfig: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def returns_proposals(self) -> bool: ...

    def detect_batch(
        self,
        images: Tensor,
        image_sizes: Tensor,
        original_sizes: Tensor,
        *,
        proposals: bool = False,
    ) -> tuple[BatchDetections, Proposals | None]:
        """``images`` Tensor[N, 3, H, W] normalized and padded; ``image_sizes`` and
        ``original_sizes`` Tensor[N, 2] (h, w) inside the padding and before resizing -> the
        batch's detections in original pixels, and its proposals when ``proposals``."""
        ...
