"""Per-image results as plain numpy arrays with class names: what users get back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fasterrcnn.config import ClassTable
from fasterrcnn.modeling.postprocess import ImageDetections
from fasterrcnn.modeling.rpn import Proposals


@dataclass
class Detections:
    """Detections of one image, in decreasing score order.

    ``boxes``: (N, 4) float32 ``x1, y1, x2, y2`` in original-image pixels; ``scores``: (N,)
    float32; ``category_ids``: (N,) int64 category ids of the model's class table (COCO ids
    for the COCO presets); ``class_names``: N names. ``proposals`` (P, 4) float32 in
    network-input pixels and ``proposal_scores`` (P,) are filled when asked for.
    ``image_size`` is the original (h, w); ``source`` the file it came from, if any. A video
    frame's detections carry its ``frame`` index and ``time`` (seconds from the start), and,
    when tracked, ``track_ids`` (N,) int64: one id per detection, stable across frames (-1
    while its track is not confirmed).
    """

    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    class_names: list[str]
    image_size: tuple[int, int]
    source: str | None = None
    proposals: np.ndarray | None = None
    proposal_scores: np.ndarray | None = None
    frame: int | None = None
    time: float | None = None
    track_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_tensors(
        cls,
        detections: ImageDetections,
        classes: ClassTable,
        image_size: tuple[int, int],
        *,
        source: str | None = None,
        proposals: Proposals | None = None,
        score_threshold: float | None = None,
    ) -> Detections:
        """Numpy results of one image's detection tensors; labels become ids and names.

        ``score_threshold`` (optional) drops detections below it.
        """
        scores = detections.scores.detach().float().cpu().numpy()
        keep = np.ones(len(scores), dtype=bool)
        if score_threshold is not None:
            keep = scores >= score_threshold
        labels = detections.labels.cpu().numpy()[keep]
        return cls(
            boxes=detections.boxes.detach().float().cpu().numpy()[keep],
            scores=scores[keep],
            category_ids=np.asarray(classes.category_ids, dtype=np.int64)[labels],
            class_names=[classes.names[i] for i in labels],
            image_size=image_size,
            source=source,
            proposals=None if proposals is None else proposals.boxes.float().cpu().numpy(),
            proposal_scores=None if proposals is None else proposals.scores.float().cpu().numpy(),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the image and its detections (boxes as ``[x1, y1, x2, y2]``)."""
        return {
            "image": self.source,
            "height": self.image_size[0],
            "width": self.image_size[1],
            "detections": self.detection_dicts(),
        }

    def detection_dicts(self) -> list[dict[str, Any]]:
        """One dict per detection: ``box``, ``score``, ``category_id``, ``class_name`` and,
        when tracked, ``track_id``."""
        out = [
            {
                "box": [round(float(v), 3) for v in box],
                "score": round(float(score), 5),
                "category_id": int(cat),
                "class_name": name,
            }
            for box, score, cat, name in zip(
                self.boxes, self.scores, self.category_ids, self.class_names, strict=True
            )
        ]
        if self.track_ids is not None:  # -1: a track not confirmed yet
            for entry, track_id in zip(out, self.track_ids, strict=True):
                entry["track_id"] = int(track_id) if track_id >= 0 else None
        return out

    def select(self, keep: np.ndarray) -> Detections:
        """The detections where the (N,) bool mask ``keep`` is true (proposals as they are)."""
        return replace(
            self,
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            category_ids=self.category_ids[keep],
            class_names=[name for name, k in zip(self.class_names, keep, strict=True) if k],
            track_ids=None if self.track_ids is None else self.track_ids[keep],
        )
