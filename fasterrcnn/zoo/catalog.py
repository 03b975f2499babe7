"""What the zoo offers, as rows: each preset's source, published mAP, file, size, cache state."""

from __future__ import annotations

from dataclasses import dataclass

from fasterrcnn.config import ModelConfig
from fasterrcnn.modeling.faster_rcnn import FasterRCNN
from fasterrcnn.zoo.download import cached_path
from fasterrcnn.zoo.key_maps import FAMILY_NAMES
from fasterrcnn.zoo.presets import DEFAULT_MODEL, PRESETS


@dataclass(frozen=True)
class CatalogEntry:
    """One preset. ``size``: bytes of the cached file when ``cached``, else the size of its
    float32 tensors (a published file is that plus a little framing)."""

    name: str
    family: str
    source: str
    coco_map: float | None
    file_name: str | None
    size: int
    cached: bool
    default: bool


def tensor_bytes(config: ModelConfig) -> int:
    """Bytes of the model's state dict in float32 (counted on the meta device)."""
    state = FasterRCNN.skeleton(config).state_dict()
    return sum(t.numel() * 4 for t in state.values() if t.is_floating_point())


def catalog() -> list[CatalogEntry]:
    """Every preset, sorted by name."""
    entries = []
    for name in sorted(PRESETS):
        preset = PRESETS[name]
        info = preset.weights
        path = cached_path(info) if info is not None else None
        cached = path is not None and path.is_file()
        entries.append(
            CatalogEntry(
                name=name,
                family=FAMILY_NAMES[preset.family],
                source=preset.source,
                coco_map=info.coco_map if info else None,
                file_name=info.file_name if info else None,
                size=path.stat().st_size if cached and path else tensor_bytes(preset.config),
                cached=cached,
                default=name == DEFAULT_MODEL,
            )
        )
    return entries


def format_size(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"
