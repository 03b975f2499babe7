"""Input transforms: the three resize rules, padding, normalization."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fasterrcnn.data.transforms import make_batch, pad_value, resized_size
from fasterrcnn.zoo.presets import MEGENGINE_0X, TORCHVISION_R50_FPN

TV = TORCHVISION_R50_FPN.config.input
MGE = MEGENGINE_0X.input


@pytest.mark.parametrize(
    ("rounding", "hw", "expected"),
    [
        ("floor", (426, 640), (800, 1201)),  # 640 * 800 / 426 = 1201.88
        ("round", (426, 640), (800, 1202)),
        ("half_up", (426, 640), (800, 1202)),
        ("floor", (500, 2000), (333, 1333)),  # long side capped: 500 * 1333 / 2000 = 333.25
        ("round", (500, 2000), (333, 1333)),
        ("half_up", (500, 2000), (333, 1333)),
        ("round", (600, 1000), (800, 1333)),  # 1000 * 800 / 600 = 1333.33 > 1333: capped
        ("floor", (1, 2000), (1, 1333)),  # never 0 rows
    ],
)
def test_resize_rules(rounding, hw, expected):
    assert resized_size(*hw, replace(TV, size_rounding=rounding)) == expected


def test_padding_before_normalizing_is_minus_mean_over_std():
    np.testing.assert_allclose(
        pad_value(MGE).numpy(), -np.array(MGE.mean) / np.array(MGE.std), rtol=1e-6
    )
    assert pad_value(TV).abs().max().item() == 0.0


def test_batch_layout_torchvision():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(800, 1201, 3), dtype=np.uint8)  # resize is the identity
    batch = make_batch([image], TV)
    assert batch.padded_size == (800, 1216) and batch.image_sizes == [(800, 1201)]
    expected = (
        torch.from_numpy(image).permute(2, 0, 1).float() / 255
        - torch.tensor(TV.mean)[:, None, None]
    ) / torch.tensor(TV.std)[:, None, None]
    torch.testing.assert_close(batch.tensor[0, :, :, :1201], expected)
    assert batch.tensor[0, :, :, 1201:].abs().max().item() == 0.0


def test_batch_layout_megengine_bgr():
    image = np.zeros((800, 1200, 3), dtype=np.uint8)
    image[..., 0] = 255  # red in RGB
    batch = make_batch([image], MGE)
    assert batch.padded_size == (800, 1216)
    # BGR order: the red channel is the last one.
    red = (255 - MGE.mean[2]) / MGE.std[2]
    assert batch.tensor[0, 2, 0, 0].item() == pytest.approx(red, rel=1e-6)
    assert batch.tensor[0, 0, 0, 1210].item() == pytest.approx(-MGE.mean[0] / MGE.std[0], rel=1e-6)
