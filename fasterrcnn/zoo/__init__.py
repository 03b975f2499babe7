"""Model zoo: presets, checkpoint formats and weight downloads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fasterrcnn.engine.detector import Detector
from fasterrcnn.zoo.checkpoints import CheckpointError, load_into
from fasterrcnn.zoo.download import DownloadError, fetch_weights
from fasterrcnn.zoo.presets import PRESETS, Preset


class UnknownModelError(KeyError):
    """A model name that is not a preset; the message lists the valid names."""

    def __str__(self) -> str:
        return str(self.args[0])


def list_models() -> list[str]:
    """Names of every preset, sorted."""
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        valid = ", ".join(list_models())
        raise UnknownModelError(f"unknown model {name!r}; valid names: {valid}") from None


def create_model(
    name: str,
    weights: str | Path | Mapping[str, Any] | None = None,
    *,
    pretrained: bool = False,
    device: str | torch.device | None = None,
) -> Detector:
    """Build preset ``name`` in eval mode.

    ``weights``: a checkpoint file or state dict of the preset's family (or of this
    library); ``pretrained=True`` downloads the preset's published weights into the cache
    instead (and builds the model as those weights need it, see
    :class:`~fasterrcnn.zoo.presets.WeightsInfo`). With neither, the weights are freshly
    initialized.
    """
    preset = get_preset(name)
    config = preset.config
    if weights is None and pretrained:
        if preset.weights is None:
            raise DownloadError(f"{name} has no published weights")
        config = preset.weights.model_config(config)
        weights = fetch_weights(preset.weights)
    model = Detector(config)
    if weights is not None:
        load_into(model, weights, preset.family)
    if device is not None:
        model.to(device)
    return model.eval()


__all__ = [
    "CheckpointError",
    "DownloadError",
    "UnknownModelError",
    "create_model",
    "get_preset",
    "list_models",
]
