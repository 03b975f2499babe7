"""Ground truth as the network's training losses take it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Targets:
    """The ground truth of one image, in the frame of the network input.

    ``boxes``: Tensor[G, 4] float ``(x1, y1, x2, y2)`` in network-input pixels (after resize
    and flip, inside the unpadded image); ``labels``: Tensor[G] int64 foreground class index
    ``0..C-1`` (the model's class table order, background excluded). ``G`` may be 0.
    ``seed``: the seed of this image's random choice of anchors and RoIs (so that the choice
    does not depend on which process or batch the image is in); None draws from torch's
    global generator.
    """

    boxes: Tensor
    labels: Tensor
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.boxes.dim() != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"Targets.boxes must be Tensor[G, 4], not {tuple(self.boxes.shape)}")
        if self.labels.shape != (self.boxes.shape[0],):
            raise ValueError(
                f"Targets.labels must be Tensor[{self.boxes.shape[0]}], "
                f"not {tuple(self.labels.shape)}"
            )

    def to(self, device: torch.device | str) -> Targets:
        return Targets(self.boxes.to(device), self.labels.to(device), self.seed)

    def generator(self, stream: int) -> torch.Generator | None:
        """A generator on the boxes' device for random stream ``stream`` of this image (0: the
        RPN's anchors, 1: the RoIs), or None without a seed."""
        if self.seed is None:
            return None
        return torch.Generator(device=self.boxes.device).manual_seed(self.seed * 2 + stream)
