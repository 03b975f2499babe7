"""The inputs of the inference benchmark: where the images and the name-seeded weights are,
finding the images, loading the weights (:func:`seeded_state_dict` is also what ``sliced.py``
uses), building torchvision's model on the same weights, and :class:`Setup`, what the main
process prepares once before any timing. Importing it puts the checkout on ``sys.path``, so
the benchmark's other modules, which import it before ``fasterrcnn``, run from a checkout
without installing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = (REPO / ".." / "shared" / "data" / "coco-val-mini" / "val2017").resolve()
FALLBACK_IMAGES = REPO / "tests" / "fixtures" / "coco" / "val2017"
SEEDED_SHAPES = REPO / "tests" / "fixtures" / "torchvision" / "torchvision_state_dict_shapes.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}

sys.path.insert(0, str(REPO))  # run from a checkout without installing

import fasterrcnn  # noqa: E402
from fasterrcnn.zoo.checkpoints import detect_family, read_state_dict, unwrap  # noqa: E402


def find_images(folder: Path | None, count: int) -> tuple[Path, list[Path]]:
    if folder is None:
        folder = DEFAULT_IMAGES if DEFAULT_IMAGES.is_dir() else FALLBACK_IMAGES
        if folder is FALLBACK_IMAGES:
            print(f"note: {DEFAULT_IMAGES} not found; using {FALLBACK_IMAGES}")
    if not folder.is_dir():
        sys.exit(f"error: {folder} is not a folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        sys.exit(f"error: no images in {folder}")
    if len(paths) < count:
        print(f"note: {folder} has only {len(paths)} images")
    return folder, paths[:count]


def seeded_state_dict() -> dict[str, torch.Tensor] | None:
    """torchvision-format name-seeded weights (tests/helpers/seeded.py), or None without tests/."""
    if not SEEDED_SHAPES.is_file():
        return None
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.seeded import load_shapes, torch_seeded

    return torch_seeded(load_shapes(SEEDED_SHAPES))


def load_weights(args: argparse.Namespace, family: str) -> tuple[Any, str]:
    """(weights for create_model, description). Seeded weights give realistic proposal
    counts (timing of the second stage depends on them); fresh init is the last resort."""
    if args.weights is not None:
        return args.weights, str(args.weights)
    if family == "torchvision":
        state = seeded_state_dict()
        if state is not None:
            return state, "name-seeded (tests/helpers/seeded.py torch_seeded)"
    return None, "fresh init (no seeded weights for this preset)"


def torchvision_state(weights: Any) -> dict[str, torch.Tensor] | None:
    """The torchvision-format state dict for the torchvision model, if the weights are one."""
    if weights is None:
        return None
    state = unwrap(read_state_dict(weights)) if isinstance(weights, Path) else weights
    return dict(state) if detect_family(state) == "torchvision" else None


def build_torchvision(state: dict[str, torch.Tensor] | None, device: str) -> tuple[Any, str]:
    """(torchvision model or None, the reason it is None)."""
    try:
        import torchvision
        from torchvision.models.detection import fasterrcnn_resnet50_fpn
    except Exception as err:  # any import failure means "skip"
        return None, f"torchvision not importable ({type(err).__name__}: {err}); skipped"
    if state is None:
        return None, "weights are not a torchvision checkpoint; torchvision run skipped"
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    model.load_state_dict(state)
    return model.eval().to(device), f"torchvision {torchvision.__version__}"


@dataclass
class Setup:
    """What the main process prepares once, before any timing."""

    args: argparse.Namespace
    clock: Callable[[], float]
    folder: Path
    paths: list[Path]
    images: list[np.ndarray]  # decoded once; decoding is not timed
    weights: Any  # as loaded, kept alive for the whole run
    weights_desc: str
    model: fasterrcnn.Detector
    export_dir: Path
    tv_model: Any  # None when torchvision is skipped
    tv_desc: str
    kernels: str
    matmul_sizes: list[int]
