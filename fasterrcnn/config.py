"""The one typed configuration of the detector: frozen dataclasses nested by stage.

Every difference between checkpoint families (torchvision, MegEngine 0.x / 1.x, detectron2)
is a named field here, read by the module of that stage. Presets are instances of
:class:`ModelConfig` (see :mod:`fasterrcnn.zoo.presets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fasterrcnn.ops.anchors import ShapeRule
from fasterrcnn.ops.boxes import DEFAULT_SCALE_CLAMP
from fasterrcnn.ops.roi_align import Border


@dataclass(frozen=True)
class InputConfig:
    """How an uint8 HxWx3 image becomes the network input.

    Pixels are taken in ``channel_order``, divided by ``pixel_divisor`` and normalized as
    ``(x - mean) / std`` (mean/std per channel, in ``channel_order``). The image is resized so
    that its short side is ``short_side`` unless that makes the long side exceed ``max_side``
    (``size_rounding`` turns the scaled sizes into integers). It is padded at the bottom/right
    to a multiple of ``pad_divisor`` with 0, either in normalized units
    (``pad_stage="after_normalize"``) or in raw pixel units (``"before_normalize"``).
    """

    channel_order: Literal["RGB", "BGR"]
    pixel_divisor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    short_side: int = 800
    max_side: int = 1333
    # "floor": torchvision (scale = min(short/s, max/l), floor(x * scale)).
    # "round": MegEngine (Python round). "half_up": detectron2 (int(x + 0.5)).
    size_rounding: Literal["floor", "round", "half_up"] = "floor"
    # "torch_bilinear": torch interpolate (align_corners=False) on the normalized float image;
    # "cv2_linear": cv2.resize INTER_LINEAR on uint8; "pil_bilinear": Pillow BILINEAR on uint8.
    resize_backend: Literal["torch_bilinear", "cv2_linear", "pil_bilinear"] = "torch_bilinear"
    pad_divisor: int = 32
    pad_stage: Literal["after_normalize", "before_normalize"] = "after_normalize"


Depth = Literal[18, 34, 50, 101, 152]


@dataclass(frozen=True)
class BodyConfig:
    """ResNet / ResNeXt body producing res2..res5 (strides 4..32)."""

    depth: Depth = 50
    groups: int = 1
    width_per_group: int = 64
    # Where a bottleneck's stride goes: False = the 3x3 conv (torchvision), True = first 1x1.
    stride_in_1x1: bool = False
    # "frozen_bn": fixed statistics and affine (pretrained bodies); "bn": trainable batch norm
    # (SyncBN under DDP when asked); "gn": group norm, 32 groups (training from scratch).
    norm: Literal["frozen_bn", "bn", "gn"] = "frozen_bn"
    norm_eps: float = 1e-5
    # Stages frozen for training: 0 none, 1 the stem, 2 stem + res2, ...
    freeze_at: int = 2

    @property
    def bottleneck(self) -> bool:
        return self.depth >= 50

    @property
    def stage_blocks(self) -> tuple[int, int, int, int]:
        return {
            18: (2, 2, 2, 2),
            34: (3, 4, 6, 3),
            50: (3, 4, 6, 3),
            101: (3, 4, 23, 3),
            152: (3, 8, 36, 3),
        }[self.depth]

    @property
    def out_channels(self) -> tuple[int, int, int, int]:
        expansion = 4 if self.bottleneck else 1
        return tuple(64 * 2**i * expansion for i in range(4))  # type: ignore[return-value]


@dataclass(frozen=True)
class FPNConfig:
    """Feature pyramid P2..P6 from res2..res5; P6 is a stride-2 subsampling of P5."""

    out_channels: int = 256
    conv_bias: bool = True
    # A batch norm right after each lateral and output conv (MegEngine 0.x SyncBN variant).
    norm: Literal["none", "bn"] = "none"
    upsample: Literal["nearest", "bilinear"] = "nearest"


@dataclass(frozen=True)
class AnchorConfig:
    """Anchors of P2..P6: one entry of ``sizes`` per level, every ratio (h / w) at each."""

    sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    shape_rule: ShapeRule = "rounded"
    # Anchor centres at (i + center_offset) * stride; for "legacy_plus_one" the shift is
    # i * stride + center_offset * legacy_base_size around the base box centre.
    center_offset: float = 0.0
    legacy_base_size: int = 16
    # "nominal": 2**level. "padded_size_div": padded image size // feature size (torchvision,
    # which differs from nominal on P6 when the padded size is not a multiple of 64).
    stride_rule: Literal["nominal", "padded_size_div"] = "nominal"


@dataclass(frozen=True)
class BoxCoderConfig:
    """Deltas ``(dx, dy, dw, dh)`` are divided by ``weights``; dw/dh clamped if ``clamp``."""

    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    clamp: bool = True
    scale_clamp: float = DEFAULT_SCALE_CLAMP

    @property
    def clamp_value(self) -> float | None:
        return self.scale_clamp if self.clamp else None


@dataclass(frozen=True)
class SamplingConfig:
    """How training labels anchors (RPN) or proposals (RoI heads) and picks those that count.

    A box whose best IoU with the ground truth is ``>= fg_iou_threshold`` is foreground;
    in ``[bg_iou_low, bg_iou_threshold)`` background; otherwise ignored. With
    ``allow_low_quality_matches`` each ground-truth box also makes its best-overlapping boxes
    (ties included) foreground. Per image, ``batch_size_per_image`` boxes are drawn at random,
    at most ``positive_fraction`` of them foreground.
    """

    fg_iou_threshold: float
    bg_iou_threshold: float
    bg_iou_low: float = 0.0
    allow_low_quality_matches: bool = False
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5


@dataclass(frozen=True)
class RPNConfig:
    """Region proposal network head and proposal selection."""

    # "sigmoid": A logits per location. "softmax2": 2A channels laid out (2, A) = (bg, fg),
    # ranked by the raw foreground logit, scored by the 2-way softmax.
    objectness: Literal["sigmoid", "softmax2"] = "sigmoid"
    box_coder: BoxCoderConfig = field(default_factory=BoxCoderConfig)
    pre_nms_top_n_test: int = 1000  # per level
    post_nms_top_n_test: int = 1000  # per image
    pre_nms_top_n_train: int = 2000
    post_nms_top_n_train: int = 2000
    nms_threshold: float = 0.7
    # IoU with "+1" widths and areas in the NMS (MegEngine 0.x).
    nms_plus_one: bool = False
    # Proposals narrower or shorter than this (or empty) are dropped after clipping.
    min_size: float = 1e-3
    # Training: anchor labels and sampling, and the losses.
    sampling: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(
            fg_iou_threshold=0.7,
            bg_iou_threshold=0.3,
            allow_low_quality_matches=True,
            batch_size_per_image=256,
            positive_fraction=0.5,
        )
    )
    # Match the anchors of each pyramid level to the ground truth on their own (MegEngine
    # 0.x), instead of all levels' anchors together.
    match_per_level: bool = False
    # Box loss: smooth L1 with this beta; 0 is plain L1.
    smooth_l1_beta: float = 1.0 / 9
    # Both losses are divided by the number of sampled anchors ("sampled") or by
    # batch_size_per_image x images ("nominal", detectron2).
    loss_normalizer: Literal["sampled", "nominal"] = "sampled"


@dataclass(frozen=True)
class RoIPoolerConfig:
    """Multi-scale RoIAlign over P2..P5; a box goes to level
    ``floor(canonical_level + log2(sqrt(area) / canonical_size))`` clamped to the pyramid.

    ``level_epsilon`` is added after the log2 (torchvision, 1e-6) or, with
    ``level_epsilon_in_log``, to its argument (detectron2, 1e-8).
    """

    output_size: int = 7
    sampling_ratio: int = 2
    aligned: bool = False
    border: Border = "clamp"
    canonical_size: int = 224
    canonical_level: int = 4
    level_epsilon: float = 1e-6
    level_epsilon_in_log: bool = False


@dataclass(frozen=True)
class BoxHeadConfig:
    """2-FC box head and class-specific box predictor."""

    fc_dim: int = 1024
    # Foreground classes (logits = num_classes + 1 with the background).
    num_classes: int = 90
    background: Literal["first", "last"] = "first"
    # Whether ``bbox_pred`` also has 4 rows for the background class.
    deltas_include_background: bool = True
    box_coder: BoxCoderConfig = field(
        default_factory=lambda: BoxCoderConfig(weights=(10.0, 10.0, 5.0, 5.0))
    )
    # Training: proposal labels and sampling (the ground-truth boxes are added to the
    # proposals first), and the box loss's smooth L1 beta (0 is plain L1). Both losses are
    # divided by the number of sampled RoIs.
    sampling: SamplingConfig = field(
        default_factory=lambda: SamplingConfig(
            fg_iou_threshold=0.5,
            bg_iou_threshold=0.5,
            batch_size_per_image=512,
            positive_fraction=0.25,
        )
    )
    smooth_l1_beta: float = 1.0 / 9


@dataclass(frozen=True)
class PostprocessConfig:
    """From class scores and boxes to final detections."""

    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    max_detections: int = 100
    # Boxes narrower or shorter than this (network-input pixels), or empty, are dropped;
    # None keeps every box.
    min_size: float | None = 1e-2
    # Clip boxes to the network-input image before rescaling ("network"), or to the
    # original image after rescaling ("original").
    clip_frame: Literal["network", "original"] = "network"
    # After the top-k, clip the boxes to the original image again and drop those left empty
    # (detectron2's last step, which can leave fewer than ``max_detections``).
    reclip_original: bool = False


@dataclass(frozen=True)
class ClassTable:
    """Foreground class ``i`` (0-based) is COCO category ``category_ids[i]`` named ``names[i]``."""

    category_ids: tuple[int, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.category_ids) != len(self.names):
            raise ValueError("ClassTable: category_ids and names differ in length")

    def __len__(self) -> int:
        return len(self.category_ids)

    def index_of(self, category_id: int) -> int:
        """The contiguous 0-based index of ``category_id``; KeyError if it is not a class."""
        try:
            return self.category_ids.index(category_id)
        except ValueError:
            raise KeyError(
                f"category id {category_id!r} is not one of the {len(self)} classes"
            ) from None

    @classmethod
    def from_categories(cls, categories: Sequence[Mapping[str, Any]]) -> ClassTable:
        """The table of COCO-style ``{"id", "name"}`` entries, sorted by id."""
        ordered = sorted(categories, key=lambda category: category["id"])
        ids = tuple(int(category["id"]) for category in ordered)
        if len(set(ids)) != len(ids):
            raise ValueError("ClassTable: duplicate category ids")
        return cls(category_ids=ids, names=tuple(str(category["name"]) for category in ordered))


@dataclass(frozen=True)
class ModelConfig:
    """A complete Faster R-CNN + FPN: every stage's settings."""

    input: InputConfig
    classes: ClassTable
    body: BodyConfig = field(default_factory=BodyConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    pooler: RoIPoolerConfig = field(default_factory=RoIPoolerConfig)
    box_head: BoxHeadConfig = field(default_factory=BoxHeadConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)

    def __post_init__(self) -> None:
        if len(self.classes.category_ids) != self.box_head.num_classes:
            raise ValueError(
                f"class table has {len(self.classes.category_ids)} classes, "
                f"box head {self.box_head.num_classes}"
            )
