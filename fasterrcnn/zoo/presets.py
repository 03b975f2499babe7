"""Presets: a model configuration plus where its weights come from, as plain data."""

from __future__ import annotations

from dataclasses import dataclass

from fasterrcnn.config import (
    AnchorConfig,
    BodyConfig,
    BoxCoderConfig,
    BoxHeadConfig,
    FPNConfig,
    InputConfig,
    ModelConfig,
    PostprocessConfig,
    RoIPoolerConfig,
    RPNConfig,
)
from fasterrcnn.data.coco_classes import COCO_90
from fasterrcnn.zoo.checkpoints import Family


@dataclass(frozen=True)
class WeightsInfo:
    """A published weight file: name, address, SHA-256 (prefix or full) and its COCO mAP."""

    file_name: str
    url: str
    coco_map: float
    sha256: str | None = None


@dataclass(frozen=True)
class Preset:
    name: str
    config: ModelConfig
    family: Family  # checkpoint names this preset's weights use
    source: str  # the implementation whose outputs this preset reproduces
    era: str
    weights: WeightsInfo | None = None
    description: str = ""


TORCHVISION_R50_FPN = Preset(
    name="torchvision_fasterrcnn_resnet50_fpn",
    family="torchvision",
    source="torchvision.models.detection.fasterrcnn_resnet50_fpn",
    era="torchvision >= 0.13 (COCO_V1 weights)",
    description="torchvision's R50-FPN Faster R-CNN (91-way, RGB input), COCO box AP 37.0",
    weights=WeightsInfo(
        file_name="fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
        url="https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
        coco_map=37.0,
        sha256="258fb6c6",
    ),
    config=ModelConfig(
        input=InputConfig(
            channel_order="RGB",
            pixel_divisor=255.0,
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
            size_rounding="floor",
            resize_backend="torch_bilinear",
            pad_stage="after_normalize",
        ),
        classes=COCO_90,
        body=BodyConfig(depth=50, norm="frozen_bn", norm_eps=1e-5, freeze_at=2),
        fpn=FPNConfig(conv_bias=True, upsample="nearest"),
        anchors=AnchorConfig(
            shape_rule="rounded", center_offset=0.0, stride_rule="padded_size_div"
        ),
        rpn=RPNConfig(
            objectness="sigmoid",
            box_coder=BoxCoderConfig(weights=(1.0, 1.0, 1.0, 1.0), clamp=True),
            min_size=1e-3,
        ),
        pooler=RoIPoolerConfig(sampling_ratio=2, aligned=False, border="clamp", level_epsilon=1e-6),
        box_head=BoxHeadConfig(
            num_classes=90,
            background="first",
            deltas_include_background=True,
            box_coder=BoxCoderConfig(weights=(10.0, 10.0, 5.0, 5.0), clamp=True),
        ),
        postprocess=PostprocessConfig(min_size=1e-2, clip_frame="network"),
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (TORCHVISION_R50_FPN,)}
