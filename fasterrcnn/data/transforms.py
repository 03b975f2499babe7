"""From uint8 RGB images to the padded, normalized network input, per :class:`InputConfig`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fasterrcnn.config import InputConfig


@dataclass
class ImageBatch:
    """Network input for N images.

    ``tensor``: Tensor[N, 3, Hp, Wp] normalized, padded at the bottom/right;
    ``image_sizes``: (h, w) of each resized image inside the padding (the network frame);
    ``original_sizes``: (h, w) of each image as given.
    """

    tensor: Tensor
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]

    @property
    def padded_size(self) -> tuple[int, int]:
        return (self.tensor.shape[-2], self.tensor.shape[-1])

    def to(self, device: torch.device | str) -> ImageBatch:
        return ImageBatch(self.tensor.to(device), self.image_sizes, self.original_sizes)


def resized_size(height: int, width: int, cfg: InputConfig) -> tuple[int, int]:
    """(h, w) of the network input for an image of ``height x width`` (each side >= 1)."""
    new_h, new_w = _scaled_size(height, width, cfg)
    return max(new_h, 1), max(new_w, 1)


def _scaled_size(height: int, width: int, cfg: InputConfig) -> tuple[int, int]:
    short, long = min(height, width), max(height, width)
    if cfg.size_rounding == "floor":
        # torchvision: one scale, then floor(size * scale), both in Python floats.
        scale = min(cfg.short_side / short, cfg.max_side / long)
        return math.floor(float(height) * scale), math.floor(float(width) * scale)
    if cfg.size_rounding == "round":
        # MegEngine: Python round (half to even) of size * scale.
        scale = cfg.short_side / short
        if scale * long > cfg.max_side:
            scale = cfg.max_side / long
        return round(height * scale), round(width * scale)
    # detectron2: scale the sides, shrink both if the long one is too long, int(x + 0.5).
    scale = cfg.short_side / short
    new_h, new_w = height * scale, width * scale
    if max(new_h, new_w) > cfg.max_side:
        shrink = cfg.max_side / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def padded_size(height: int, width: int, cfg: InputConfig) -> tuple[int, int]:
    """(h, w) of the padded network input for one ``height x width`` image."""
    new_h, new_w = resized_size(height, width, cfg)
    d = cfg.pad_divisor
    return math.ceil(new_h / d) * d, math.ceil(new_w / d) * d


def normalize(pixels: Tensor, cfg: InputConfig) -> Tensor:
    """(3, H, W) float32 pixels in model channel order -> ``(x / divisor - mean) / std``."""
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=pixels.device)[:, None, None]
    std = torch.tensor(cfg.std, dtype=torch.float32, device=pixels.device)[:, None, None]
    if cfg.pixel_divisor != 1:
        pixels = pixels / cfg.pixel_divisor
    return (pixels - mean) / std


def pad_value(cfg: InputConfig) -> Tensor:
    """Per-channel value (Tensor[3]) of the padding in the normalized input."""
    if cfg.pad_stage == "after_normalize":
        return torch.zeros(3)
    return normalize(torch.zeros(3, 1, 1), cfg).flatten()


def resize_pixels(image: np.ndarray, cfg: InputConfig) -> Tensor:
    """HxWx3 uint8 RGB -> Tensor[3, h, w] uint8 in the model's channel order: the stage that
    works on uint8 (decoded files go through it in ``DataLoader`` workers).

    The cv2 and Pillow backends resize here, on uint8. The torch backend resizes normalized
    floats, in :func:`normalize_pixels`: its pixels leave this stage at their original size.
    """
    if cfg.channel_order == "BGR":
        image = image[:, :, ::-1]
    height, width = image.shape[:2]
    new_h, new_w = resized_size(height, width, cfg)
    if cfg.resize_backend == "cv2_linear":
        image = cv2.resize(
            np.ascontiguousarray(image), (new_w, new_h), interpolation=cv2.INTER_LINEAR
        )
    elif cfg.resize_backend == "pil_bilinear":
        from PIL import Image

        image = np.array(  # a writable copy (Pillow's buffer is read-only)
            Image.fromarray(np.ascontiguousarray(image)).resize(
                (new_w, new_h), Image.Resampling.BILINEAR
            )
        )
    image = np.ascontiguousarray(image)
    if not image.flags.writeable:  # a caller's read-only array (np.asarray of a PIL image)
        image = image.copy()
    return torch.from_numpy(image).permute(2, 0, 1)


def normalize_pixels(pixels: Tensor, size: tuple[int, int], cfg: InputConfig) -> Tensor:
    """:func:`resize_pixels`'s uint8 Tensor[3, h, w] -> the float32 network input
    Tensor[3, size] (normalized and, for the torch backend, resized), on ``pixels``' device.

    The torch backend's bilinear kernel gives other bits on one thread than on several, so
    this stage runs in the process that runs the network, never in a loader worker.
    """
    x = normalize(pixels.float(), cfg)
    if (x.shape[1], x.shape[2]) != size:
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
    return x


def preprocess_image(image: np.ndarray, cfg: InputConfig) -> Tensor:
    """HxWx3 uint8 RGB -> Tensor[3, h, w] float32: resized and normalized, not padded."""
    size = resized_size(image.shape[0], image.shape[1], cfg)
    return normalize_pixels(resize_pixels(image, cfg), size, cfg)


def batch_images(images: list[Tensor], cfg: InputConfig) -> Tensor:
    """Pad Tensor[3, hi, wi] images into one Tensor[N, 3, Hp, Wp] (multiples of pad_divisor)."""
    d = cfg.pad_divisor
    height = math.ceil(max(x.shape[1] for x in images) / d) * d
    width = math.ceil(max(x.shape[2] for x in images) / d) * d
    fill = pad_value(cfg).to(images[0])[:, None, None]
    batch = fill.expand(3, height, width).repeat(len(images), 1, 1, 1)
    for i, x in enumerate(images):
        batch[i, :, : x.shape[1], : x.shape[2]] = x
    return batch


def make_batch(images: list[np.ndarray], cfg: InputConfig) -> ImageBatch:
    """Preprocess and pad HxWx3 uint8 RGB images into an :class:`ImageBatch`."""
    tensors = [preprocess_image(image, cfg) for image in images]
    return ImageBatch(
        tensor=batch_images(tensors, cfg),
        image_sizes=[(x.shape[1], x.shape[2]) for x in tensors],
        original_sizes=[(im.shape[0], im.shape[1]) for im in images],
    )
