"""One augmented training image and a padded batch of them, as the training ``DataLoader``
hands them to the loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from fasterrcnn.config import InputConfig
from fasterrcnn.data.transforms import batch_images
from fasterrcnn.modeling.targets import Targets


@dataclass
class TrainingSample:
    """One augmented training image.

    ``image``: Tensor[3, h, w] float32, normalized, in the model's channel order, unpadded;
    ``targets``: its boxes and labels in that frame (after resize and flip);
    ``original_size``: (h, w) as decoded; ``short_side`` and ``flipped``: the augmentation
    drawn; ``iteration``: the key's iteration (None if the key had none); ``cfg``: the
    dataset's input config (the padding of :func:`collate_training`).
    """

    image: Tensor
    targets: Targets
    image_id: int
    original_size: tuple[int, int]
    short_side: int
    flipped: bool
    iteration: int | None
    cfg: InputConfig


@dataclass
class TrainingBatch:
    """N training samples padded into one network input.

    ``images``: Tensor[N, 3, Hp, Wp] float32, padded at the bottom/right with the input
    config's pad value to multiples of ``pad_divisor``; ``image_sizes``: (h, w) of each image
    inside the padding; ``targets``: each image's ground truth in its network frame;
    ``iteration``: the samples' iteration (None if their keys had none).
    """

    images: Tensor
    image_sizes: list[tuple[int, int]]
    targets: list[Targets]
    image_ids: list[int]
    original_sizes: list[tuple[int, int]]
    iteration: int | None

    def __len__(self) -> int:
        return len(self.image_ids)

    def to(self, device: torch.device | str) -> TrainingBatch:
        return replace(
            self, images=self.images.to(device), targets=[t.to(device) for t in self.targets]
        )

    def pin_memory(self) -> TrainingBatch:
        """Called by the ``DataLoader`` (``pin_memory=True``) for fast copies to a GPU."""
        return replace(
            self,
            images=self.images.pin_memory(),
            targets=[
                Targets(t.boxes.pin_memory(), t.labels.pin_memory(), t.seed) for t in self.targets
            ],
        )


def collate_training(samples: Sequence[TrainingSample]) -> TrainingBatch:
    """``collate_fn`` of the training ``DataLoader``: pad the samples' images into one batch
    (:func:`~fasterrcnn.data.transforms.batch_images`), keep sizes, targets and ids."""
    if not samples:
        raise ValueError("collate_training: no samples to collate")
    cfg = samples[0].cfg
    if any(s.cfg != cfg for s in samples):
        raise ValueError("collate_training: the samples come from different input configs")
    iterations = {s.iteration for s in samples}
    if len(iterations) > 1:
        raise ValueError(f"collate_training: samples of several iterations {iterations}")
    return TrainingBatch(
        images=batch_images([s.image for s in samples], cfg),
        image_sizes=[(s.image.shape[1], s.image.shape[2]) for s in samples],
        targets=[s.targets for s in samples],
        image_ids=[s.image_id for s in samples],
        original_sizes=[s.original_size for s in samples],
        iteration=samples[0].iteration,
    )
