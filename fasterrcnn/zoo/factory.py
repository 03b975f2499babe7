"""Building a model: a preset by name, or the model a native checkpoint holds, with its
weights from a file, a state dict or the preset's published download."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fasterrcnn.config_json import config_differences
from fasterrcnn.inference.detector import Detector
from fasterrcnn.modeling.precision import check_precision
from fasterrcnn.zoo.checkpoint_files import CheckpointError
from fasterrcnn.zoo.checkpoints import load_into
from fasterrcnn.zoo.download import DownloadError, fetch_weights, file_digests, published_file
from fasterrcnn.zoo.native import NativeCheckpoint, is_native, read_native, save_native
from fasterrcnn.zoo.presets import PRESETS, Preset

logger = logging.getLogger("fasterrcnn")


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
    name: str | None = None,
    weights: str | Path | Mapping[str, Any] | NativeCheckpoint | None = None,
    *,
    pretrained: bool = False,
    device: str | torch.device | None = None,
    precision: str = "fp32",
) -> Detector:
    """Build a model in eval mode: preset ``name``, or the model a native checkpoint holds.

    ``weights``: a native checkpoint (a file written by
    :func:`~fasterrcnn.zoo.native.save_native`, or a :class:`NativeCheckpoint`) builds the
    model of its own configuration (class table included), and ``name`` may be None. If a
    ``name`` is given as well and its configuration differs from the file's (another body,
    another class count...), the file wins: its configuration is used and a warning on the
    ``fasterrcnn`` logger names the fields that differ.

    Any other ``weights`` (a checkpoint file or state dict of the preset's family or of this
    library) needs ``name``; ``pretrained=True`` downloads the preset's published weights into
    the cache instead. A published file runs with the settings it was made for (see
    :class:`~fasterrcnn.zoo.presets.WeightsInfo`; torchvision's COCO file: frozen batch norm
    without epsilon) whether it is downloaded or passed as a path (recognised by checksum).
    With neither, the weights are freshly initialized.

    A model whose weights are loaded is built on the meta device: no random initialisation
    is spent on parameters about to be overwritten.

    ``precision``: ``"fp32"``, or ``"bf16"`` where the device runs bfloat16 natively (else a
    one-line :class:`~fasterrcnn.modeling.precision.PrecisionError`); see
    :meth:`~fasterrcnn.modeling.faster_rcnn.FasterRCNN.set_precision`.
    """
    checked = check_precision(precision, device if device is not None else "cpu")
    native = _native_weights(name, weights)
    if native is not None:
        if name is not None:
            _warn_if_overridden(get_preset(name), native, weights)
        model = Detector.skeleton(native.config)
        try:
            own = not isinstance(weights, NativeCheckpoint)  # just read from the file
            load_into(model, native.state_dict, "native", own=own)
        except CheckpointError as err:
            where = f"{weights}: " if isinstance(weights, (str, Path)) else ""
            raise CheckpointError(f"{where}{err}") from None
    else:
        if name is None:
            raise UnknownModelError(
                "create_model: name a preset (see list_models()) unless weights is a native "
                "fasterrcnn checkpoint"
            )
        preset = get_preset(name)
        config = preset.config
        published = None
        if weights is None and pretrained:
            if preset.weights is None:
                raise DownloadError(f"{name} has no published weights")
            published = preset.weights
            weights = fetch_weights(published)
        elif isinstance(weights, (str, Path)):
            published = published_file(Path(weights), preset.family)
        if published is not None:
            config = published.model_config(config)
        if weights is None:
            model = Detector(config)  # freshly initialized
        else:
            assert not isinstance(weights, NativeCheckpoint)  # handled above
            model = Detector.skeleton(config)
            load_into(model, weights, preset.family)
    if device is not None:
        model.to(device)
    if model.device.type == "cpu":
        # oneDNN's NHWC convolutions are faster on CPUs; the weights' format carries every
        # feature map into it (the R50 body and FPN ran 1.1x faster than in NCHW).
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs lack it
    model.set_precision(checked)
    return model.eval()


def _native_weights(
    name: str | None, weights: str | Path | Mapping[str, Any] | NativeCheckpoint | None
) -> NativeCheckpoint | None:
    """The native checkpoint ``weights`` is or names, if any. Without a preset ``name``, a
    file must be one (else a one-line CheckpointError says why it is not)."""
    if isinstance(weights, NativeCheckpoint):
        return weights
    if isinstance(weights, (str, Path)) and (name is None or is_native(weights)):
        return read_native(weights)
    return None


def _warn_if_overridden(preset: Preset, native: NativeCheckpoint, weights: object) -> None:
    differences = config_differences(native.config, preset.config)
    if not differences:
        return
    source = weights if isinstance(weights, (str, Path)) else "the native checkpoint"
    logger.warning(
        "%s holds its own model configuration, which is used instead of %s's (they differ in %s)",
        source,
        preset.name,
        ", ".join(differences),
    )


def convert_checkpoint(
    source: str | Path, destination: str | Path, name: str | None = None
) -> Detector:
    """Write any checkpoint ``create_model`` takes (with the preset ``name`` it was made for,
    or None for a native file) as a native file at ``destination``, recording the source
    file's name and SHA-256 in its metadata; the model it holds.

    A checkpoint that does not load is a :class:`CheckpointError` (an unknown ``name`` an
    :class:`UnknownModelError`); a ``destination`` that cannot be written an ``OSError``.
    """
    source = Path(source)
    model = create_model(name, weights=source)
    digest = file_digests(source)[0]
    save_native(
        destination,
        model,
        model.config,
        preset=name,
        metadata={"source_file": source.name, "source_sha256": digest},
    )
    return model
