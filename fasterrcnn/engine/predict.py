"""Inference on image files or arrays, returning plain numpy results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch

from fasterrcnn.data.images import read_image, to_rgb
from fasterrcnn.data.transforms import padded_size

if TYPE_CHECKING:
    from fasterrcnn.modeling.detector import FasterRCNN
    from fasterrcnn.modeling.postprocess import ImageDetections
    from fasterrcnn.modeling.rpn import Proposals

ImageSource = str | Path | np.ndarray


@dataclass
class Detections:
    """Detections of one image, in decreasing score order.

    ``boxes``: (N, 4) float32 ``x1, y1, x2, y2`` in original-image pixels; ``scores``: (N,)
    float32; ``category_ids``: (N,) int64 COCO category ids; ``class_names``: N names.
    ``proposals`` (P, 4) float32 in network-input pixels and ``proposal_scores`` (P,) are
    filled when asked for. ``image_size`` is the original (h, w).
    """

    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    class_names: list[str]
    image_size: tuple[int, int]
    source: str | None = None
    proposals: np.ndarray | None = None
    proposal_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the image and its detections (boxes as ``[x1, y1, x2, y2]``)."""
        return {
            "image": self.source,
            "height": self.image_size[0],
            "width": self.image_size[1],
            "detections": [
                {
                    "box": [round(float(v), 3) for v in box],
                    "score": round(float(score), 5),
                    "category_id": int(cat),
                    "class_name": name,
                }
                for box, score, cat, name in zip(
                    self.boxes, self.scores, self.category_ids, self.class_names, strict=True
                )
            ],
        }


def load_source(source: ImageSource, channels: str = "RGB") -> tuple[np.ndarray, str | None]:
    """An image path or HxWx3 uint8 array -> (RGB array, path string or None)."""
    if isinstance(source, (str, Path)):
        return read_image(source), str(source)
    return to_rgb(source, channels), None


@overload
def predict(
    model: FasterRCNN,
    source: ImageSource,
    *,
    channels: str = ...,
    score_threshold: float | None = ...,
    return_proposals: bool = ...,
) -> Detections: ...
@overload
def predict(
    model: FasterRCNN,
    source: list[ImageSource],
    *,
    channels: str = ...,
    score_threshold: float | None = ...,
    return_proposals: bool = ...,
) -> list[Detections]: ...
@torch.inference_mode()
def predict(
    model: FasterRCNN,
    source: ImageSource | list[ImageSource],
    *,
    channels: str = "RGB",
    score_threshold: float | None = None,
    return_proposals: bool = False,
) -> Detections | list[Detections]:
    """Run ``model`` on one image source or a list of them.

    ``channels`` gives the channel order of array inputs; files are decoded as they are.
    ``score_threshold`` (optional) drops detections below it after the model's own
    post-processing. Returns one :class:`Detections` per source.

    Images of a list are batched only with images of the same padded network-input size:
    padding an image further would change the features near its border, so every image gets
    exactly the result it gets alone.
    """
    sources: list[ImageSource] = source if isinstance(source, list) else [source]
    loaded = [load_source(s, channels) for s in sources]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (image, _) in enumerate(loaded):
        groups.setdefault(
            padded_size(image.shape[0], image.shape[1], model.config.input), []
        ).append(i)
    results: list[Detections | None] = [None] * len(loaded)
    for members in groups.values():
        batch = model.preprocess([loaded[i][0] for i in members])
        detections, raw = model.detect(batch)
        for k, i in enumerate(members):
            results[i] = _to_numpy(
                model, detections[k], raw.rpn.proposals[k], batch.original_sizes[k],
                loaded[i][1], score_threshold, return_proposals,
            )  # fmt: skip
    done = [r for r in results if r is not None]
    return done if isinstance(source, list) else done[0]


def _to_numpy(
    model: FasterRCNN,
    dets: ImageDetections,
    proposals: Proposals,
    size: tuple[int, int],
    name: str | None,
    score_threshold: float | None,
    return_proposals: bool,
) -> Detections:
    classes = model.config.classes
    keep = np.ones(len(dets.scores), dtype=bool)
    if score_threshold is not None:
        keep = (dets.scores >= score_threshold).cpu().numpy()
    labels = dets.labels.cpu().numpy()[keep]
    return Detections(
        boxes=dets.boxes.cpu().float().numpy()[keep],
        scores=dets.scores.cpu().float().numpy()[keep],
        category_ids=np.asarray(classes.category_ids, dtype=np.int64)[labels],
        class_names=[classes.names[i] for i in labels],
        image_size=size,
        source=name,
        proposals=proposals.boxes.cpu().float().numpy() if return_proposals else None,
        proposal_scores=proposals.scores.cpu().float().numpy() if return_proposals else None,
    )
