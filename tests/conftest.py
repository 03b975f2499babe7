"""Shared fixtures: name-seeded reference weights and models built from them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from seeded import DATA, load_shapes, torch_seeded

import fasterrcnn

TORCHVISION = "torchvision_fasterrcnn_resnet50_fpn"
IMAGES = DATA / "coco" / "val2017"


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tv_state_dict() -> dict[str, torch.Tensor]:
    """torchvision-format state dict with the reference's name-seeded weights."""
    return torch_seeded(load_shapes(DATA / "torchvision" / "torchvision_state_dict_shapes.json"))


@pytest.fixture(scope="session")
def tv_weights_path(tv_state_dict, tmp_path_factory) -> Path:
    """The same weights saved as a torchvision ``.pth`` file."""
    path = tmp_path_factory.mktemp("weights") / "torchvision_seeded.pth"
    torch.save(tv_state_dict, path)
    return path


@pytest.fixture(scope="session")
def tv_model(tv_state_dict) -> fasterrcnn.Detector:
    return fasterrcnn.create_model(TORCHVISION, weights=tv_state_dict)
