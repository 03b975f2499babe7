"""Shared fixtures: name-seeded reference weights and models built from them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from helpers.coco_slice import ANN_FILE
from helpers.models import RES18, custom_config
from helpers.seeded import DATA, load_shapes, torch_seeded

import fasterrcnn
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.zoo import save_native

TORCHVISION = "torchvision_fasterrcnn_resnet50_fpn"
IMAGES = DATA / "coco" / "val2017"


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread while the test runs (the same kernels in every run, and fast on a
    shared machine), then the former count again."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


@pytest.fixture(scope="session")
def pet_model() -> fasterrcnn.Detector:
    """A freshly initialized R18 with a 3-class table (see ``helpers.models.custom_config``)."""
    torch.manual_seed(0)
    return fasterrcnn.Detector(custom_config()).eval()


@pytest.fixture(scope="session")
def pet_file(pet_model, tmp_path_factory) -> Path:
    """``pet_model`` as a native file (preset R18, a training iteration in its metadata)."""
    path = tmp_path_factory.mktemp("native") / "model_final.safetensors"
    save_native(path, pet_model, custom_config(), preset=RES18, metadata={"iteration": "90000"})
    return path


@pytest.fixture(scope="session")
def raw() -> dict:
    """The COCO slice's instances file, as ``json`` parses it."""
    return json.loads(ANN_FILE.read_text())


@pytest.fixture(scope="session")
def dataset() -> CocoDataset:
    """The COCO slice's instances file read by the data layer, with its image folder."""
    return CocoDataset.load(ANN_FILE, IMAGES)


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory):
    """The slow tests' trained model, trained once per session on first use (see
    helpers/scratch_model.py)."""
    from helpers.scratch_model import train_scratch

    return train_scratch(tmp_path_factory.mktemp("learning"))
