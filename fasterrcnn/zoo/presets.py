"""Presets: a model configuration plus where its weights come from, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, replace

from fasterrcnn.config import (
    AnchorConfig,
    BodyConfig,
    BoxCoderConfig,
    BoxHeadConfig,
    Depth,
    FPNConfig,
    InputConfig,
    ModelConfig,
    PostprocessConfig,
    RoIPoolerConfig,
    RPNConfig,
    SamplingConfig,
)
from fasterrcnn.data.coco_classes import COCO_80, COCO_90
from fasterrcnn.zoo.key_maps import Family


@dataclass(frozen=True)
class WeightsInfo:
    """A published weight file: name, address, checksum (a SHA-256 or MD5 prefix, or the full
    SHA-256) and its COCO box mAP.

    ``body_norm_eps``: the frozen batch norm epsilon the file was made for, where it differs
    from the architecture's (torchvision runs its COCO_V1 file with 0.0); the model built for
    these weights uses it.
    """

    file_name: str
    url: str
    coco_map: float
    sha256: str | None = None
    md5: str | None = None  # a prefix, where the source names its files by MD5 (detectron2)
    body_norm_eps: float | None = None

    @property
    def has_settings(self) -> bool:
        """Whether the file needs settings of its own (:meth:`model_config` changes a config)."""
        return self.body_norm_eps is not None

    def model_config(self, config: ModelConfig) -> ModelConfig:
        """``config`` as these weights need it."""
        if self.body_norm_eps is None:
            return config
        return replace(config, body=replace(config.body, norm_eps=self.body_norm_eps))


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
        body_norm_eps=0.0,
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


# MegEngine/Models, official/vision/detection. Both eras read BGR 0..255 images resized by
# cv2 (INTER_LINEAR, Python round), pad them to 32 with raw 0 before normalizing, and use
# MegEngine's RoIAlign (aligned, 2 samples, 0 outside the map), an 81-way softmax, deltas
# scaled by (0.1, 0.1, 0.2, 0.2) without a dw/dh clamp, and per-class NMS in original pixels.
# Training: L1 box losses (beta 0) and half of the 512 sampled RoIs may be foreground.
_MGE_URL = "https://data.megengine.org.cn/models/weights/"

MEGENGINE_1X = ModelConfig(
    input=InputConfig(
        channel_order="BGR",
        pixel_divisor=1.0,
        mean=(103.530, 116.280, 123.675),
        std=(57.375, 57.120, 58.395),
        size_rounding="round",
        resize_backend="cv2_linear",
        pad_stage="before_normalize",
    ),
    classes=COCO_80,
    body=BodyConfig(depth=50, norm="frozen_bn", norm_eps=1e-5, freeze_at=2),
    fpn=FPNConfig(conv_bias=True, upsample="bilinear"),
    anchors=AnchorConfig(shape_rule="exact", center_offset=0.5, stride_rule="nominal"),
    rpn=RPNConfig(
        objectness="sigmoid",
        box_coder=BoxCoderConfig(weights=(1.0, 1.0, 1.0, 1.0), clamp=False),
        post_nms_top_n_train=1000,
        min_size=0.0,
        smooth_l1_beta=0.0,
    ),
    pooler=RoIPoolerConfig(sampling_ratio=2, aligned=True, border="zero", level_epsilon=0.0),
    box_head=BoxHeadConfig(
        num_classes=80,
        background="first",
        deltas_include_background=False,
        box_coder=BoxCoderConfig(weights=(10.0, 10.0, 5.0, 5.0), clamp=False),
        sampling=SamplingConfig(
            fg_iou_threshold=0.5,
            bg_iou_threshold=0.5,
            batch_size_per_image=512,
            positive_fraction=0.5,
        ),
        smooth_l1_beta=0.0,
    ),
    postprocess=PostprocessConfig(min_size=None, clip_frame="original"),
)

# The 0.x era (the 38.8 weights): Detectron-1 anchors, a 2-class softmax RPN with "+1" NMS
# whose anchors are matched level by level in training, FPN convs without bias, and
# background deltas in the box predictor.
MEGENGINE_0X = replace(
    MEGENGINE_1X,
    fpn=FPNConfig(conv_bias=False, upsample="bilinear"),
    anchors=AnchorConfig(
        shape_rule="legacy_plus_one", center_offset=-0.5, legacy_base_size=16, stride_rule="nominal"
    ),
    rpn=replace(MEGENGINE_1X.rpn, objectness="softmax2", nms_plus_one=True, match_per_level=True),
    box_head=replace(MEGENGINE_1X.box_head, deltas_include_background=True),
)

# SyncBN variant: trainable batch norm in the body (not frozen) and after every FPN conv.
MEGENGINE_0X_SYNCBN = replace(
    MEGENGINE_0X,
    body=replace(MEGENGINE_0X.body, norm="bn", freeze_at=0),
    fpn=FPNConfig(conv_bias=False, norm="bn", upsample="bilinear"),
)


def _body(config: ModelConfig, depth: Depth, groups: int = 1, width: int = 64) -> ModelConfig:
    return replace(
        config, body=replace(config.body, depth=depth, groups=groups, width_per_group=width)
    )


def _megengine(
    name: str, config: ModelConfig, era: str, file_name: str, coco_map: float, description: str
) -> Preset:
    return Preset(
        name=name,
        config=config,
        family="megengine",
        source=f"MegEngine/Models official/vision/detection ({era})",
        era=era,
        weights=WeightsInfo(file_name=file_name, url=_MGE_URL + file_name, coco_map=coco_map),
        description=description,
    )


_V0 = "MegEngine 0.x (99904cb)"
_V1 = "MegEngine 1.x (v1.2.0)"
_V16 = "MegEngine 1.6 (HEAD 78882f9)"

MEGENGINE_PRESETS = (
    _megengine(
        "faster_rcnn_res50_coco_1x_800size", MEGENGINE_0X, _V0,
        "faster_rcnn_res50_coco_1x_800size_38dot8_5e195d80.pkl", 38.8,
        "the seed: MegEngine's model-hub R50-FPN, 1x schedule",
    ),
    _megengine(
        "faster_rcnn_res50_coco_1x_800size_syncbn", MEGENGINE_0X_SYNCBN, _V0,
        "faster_rcnn_res50_coco_1x_800size_syncbn_39dot3_09b99bce.pkl", 39.3,
        "R50-FPN trained with SyncBN in the body and the FPN",
    ),
    _megengine(
        "faster_rcnn_res101_coco_2x_800size", _body(MEGENGINE_0X, 101), _V0,
        "faster_rcnn_res101_coco_2x_800size_43dot0_ee249359.pkl", 43.0, "R101-FPN, 2x",
    ),
    _megengine(
        "faster_rcnn_resx101_coco_2x_800size", _body(MEGENGINE_0X, 101, 32, 8), _V0,
        "faster_rcnn_resx101_coco_2x_800size_44dot7_d03b05b2.pkl", 44.7, "X101-32x8d-FPN, 2x",
    ),
    _megengine(
        "faster_rcnn_res50_coco_1x_800size_mge1", MEGENGINE_1X, _V1,
        "faster_rcnn_res50_coco_1x_800size_38dot0_f5e2000d.pkl", 38.0, "R50-FPN, 1x",
    ),
    _megengine(
        "faster_rcnn_res101_coco_2x_800size_mge1", _body(MEGENGINE_1X, 101), _V1,
        "faster_rcnn_res101_coco_2x_800size_42dot5_b7872f2d.pkl", 42.5, "R101-FPN, 2x",
    ),
    _megengine(
        "faster_rcnn_resx101_coco_2x_800size_mge1", _body(MEGENGINE_1X, 101, 32, 8), _V1,
        "faster_rcnn_resx101_coco_2x_800size_43dot6_79fb71a7.pkl", 43.6, "X101-32x8d-FPN, 2x",
    ),
    _megengine(
        "faster_rcnn_res18_coco_3x_800size", _body(MEGENGINE_1X, 18), _V16,
        "faster_rcnn_res18_coco_3x_800size_35dot7_a33835ca.pkl", 35.7, "R18-FPN, 3x",
    ),
    _megengine(
        "faster_rcnn_res34_coco_3x_800size", _body(MEGENGINE_1X, 34), _V16,
        "faster_rcnn_res34_coco_3x_800size_39dot6_11fca4d4.pkl", 39.6, "R34-FPN, 3x",
    ),
    _megengine(
        "faster_rcnn_res50_coco_3x_800size", MEGENGINE_1X, _V16,
        "faster_rcnn_res50_coco_3x_800size_40dot1_8682ff1a.pkl", 40.1, "R50-FPN, 3x",
    ),
    _megengine(
        "faster_rcnn_res101_coco_3x_800size", _body(MEGENGINE_1X, 101), _V16,
        "faster_rcnn_res101_coco_3x_800size_42dot6_2538b0ff.pkl", 42.6, "R101-FPN, 3x",
    ),
    _megengine(
        "faster_rcnn_resx101_coco_2x_800size_mge16", _body(MEGENGINE_1X, 101, 32, 8), _V16,
        "faster_rcnn_resx101_coco_2x_800size_44dot1_e5e0060b.pkl", 44.1, "X101-32x8d-FPN, 2x",
    ),
)  # fmt: skip


# detectron2's model zoo (COCO-Detection/faster_rcnn_R_50_FPN_{1x,3x}.yaml): BGR 0..255 minus
# the mean (std 1) resized by Pillow, the stride in each bottleneck's first 1x1 conv, anchors
# not rounded, RoIAlign aligned with adaptive sampling, the background as the last logit, and
# a last clip to the original image. Training: L1 box losses; the RPN's divided by 256 per
# image.
DETECTRON2_R50_FPN = ModelConfig(
    input=InputConfig(
        channel_order="BGR",
        pixel_divisor=1.0,
        mean=(103.530, 116.280, 123.675),
        std=(1.0, 1.0, 1.0),
        size_rounding="half_up",
        resize_backend="pil_bilinear",
        pad_stage="after_normalize",
    ),
    classes=COCO_80,
    body=BodyConfig(depth=50, stride_in_1x1=True, norm="frozen_bn", norm_eps=1e-5, freeze_at=2),
    fpn=FPNConfig(conv_bias=True, upsample="nearest"),
    anchors=AnchorConfig(shape_rule="exact", center_offset=0.0, stride_rule="nominal"),
    rpn=RPNConfig(
        objectness="sigmoid",
        box_coder=BoxCoderConfig(weights=(1.0, 1.0, 1.0, 1.0), clamp=True),
        post_nms_top_n_train=1000,
        min_size=0.0,
        smooth_l1_beta=0.0,
        loss_normalizer="nominal",
    ),
    pooler=RoIPoolerConfig(
        sampling_ratio=0,
        aligned=True,
        border="clamp",
        level_epsilon=1e-8,
        level_epsilon_in_log=True,
    ),
    box_head=BoxHeadConfig(
        num_classes=80,
        background="last",
        deltas_include_background=False,
        box_coder=BoxCoderConfig(weights=(10.0, 10.0, 5.0, 5.0), clamp=True),
        smooth_l1_beta=0.0,
    ),
    postprocess=PostprocessConfig(min_size=None, clip_frame="network", reclip_original=True),
)

_D2_URL = "https://dl.fbaipublicfiles.com/detectron2/COCO-Detection/"


def _detectron2(name: str, schedule: str, model_id: int, md5: str, coco_map: float) -> Preset:
    file_name = f"model_final_{md5}.pkl"
    return Preset(
        name=name,
        config=DETECTRON2_R50_FPN,
        family="detectron2",
        source=f"detectron2 model zoo, COCO-Detection/faster_rcnn_R_50_FPN_{schedule}.yaml",
        era="detectron2 (2019 model zoo)",
        weights=WeightsInfo(
            file_name=file_name,
            url=f"{_D2_URL}faster_rcnn_R_50_FPN_{schedule}/{model_id}/{file_name}",
            coco_map=coco_map,
            md5=md5,
        ),
        description=f"detectron2's R50-FPN, {schedule} schedule",
    )


DETECTRON2_PRESETS = (
    _detectron2("detectron2_faster_rcnn_R_50_FPN_1x", "1x", 137257794, "b275ba", 37.9),
    _detectron2("detectron2_faster_rcnn_R_50_FPN_3x", "3x", 137849458, "280758", 40.2),
)

DEFAULT_MODEL = "faster_rcnn_res50_coco_1x_800size"

PRESETS: dict[str, Preset] = {
    p.name: p for p in (*MEGENGINE_PRESETS, TORCHVISION_R50_FPN, *DETECTRON2_PRESETS)
}
