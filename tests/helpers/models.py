"""Models and checkpoint files several test rooms build: a detectron2 model-zoo pickle of the
name-seeded weights, and a small 3-class model for the native format and exports."""

from __future__ import annotations

import dataclasses

from fasterrcnn.config import ClassTable, ModelConfig
from fasterrcnn.zoo import get_preset
from helpers.megengine_pickle import numpy1_pickle_bytes
from helpers.seeded import DATA, load_shapes, torch_seeded

DETECTRON2_REFERENCE = DATA / "detectron2"
DETECTRON2_STEM = "backbone.bottom_up.stem.conv1.weight"
RES18 = "faster_rcnn_res18_coco_3x_800size"
PETS = ClassTable((1, 2, 3), ("cat", "dog", "bird"))


def model_zoo_pickle() -> bytes:
    """detectron2's recipe (the torchvision table on its keys, the stem conv times 2**-6) as
    a model-zoo ``.pkl``: ``{"model": {name: ndarray}, "__author__": ...}``, numpy 1.x
    globals."""
    shapes = load_shapes(DETECTRON2_REFERENCE / "detectron2_state_dict_shapes.json")
    state = torch_seeded(shapes, stem_scale={DETECTRON2_STEM: 2.0**-6})
    blob = {"model": {k: v.numpy() for k, v in state.items()}, "__author__": "Detectron2 Model Zoo"}
    return numpy1_pickle_bytes(blob, protocol=3)


def custom_config() -> ModelConfig:
    """R18 with the 3-class table, at short side 320 with 100 proposals (fast on a CPU)."""
    base = get_preset(RES18).config
    return dataclasses.replace(
        base,
        classes=PETS,
        box_head=dataclasses.replace(base.box_head, num_classes=3),
        input=dataclasses.replace(base.input, short_side=320, max_side=533),
        rpn=dataclasses.replace(base.rpn, pre_nms_top_n_test=100, post_nms_top_n_test=100),
    )
