"""A tiny detector configuration for training tests (ResNet-18 body, narrow FPN and heads,
short side 128: an iteration takes a fraction of a second on a CPU), on the COCO slice."""

from __future__ import annotations

from dataclasses import replace

from fasterrcnn.config import ModelConfig
from fasterrcnn.zoo.presets import PRESETS
from helpers.seeded import DATA

COCO = DATA / "coco"
ANNOTATIONS = COCO / "instances_val2017.json"
IMAGES = COCO / "val2017"
RES18 = "faster_rcnn_res18_coco_3x_800size"


def tiny_config(short_side: int = 128, max_side: int = 192) -> ModelConfig:
    """The R18 preset at short side 128 (long side 192) unless told, with group norm, 32 FPN
    channels, a 64-wide box head and few proposals and RoIs."""
    cfg = PRESETS[RES18].config
    return replace(
        cfg,
        input=replace(cfg.input, short_side=short_side, max_side=max_side),
        body=replace(cfg.body, norm="gn", freeze_at=0),
        fpn=replace(cfg.fpn, out_channels=32),
        rpn=replace(cfg.rpn, pre_nms_top_n_train=300, post_nms_top_n_train=200),
        box_head=replace(
            cfg.box_head,
            fc_dim=64,
            sampling=replace(cfg.box_head.sampling, batch_size_per_image=64),
        ),
    )
