"""MegEngine's detection interface, for code written against MegEngine/Models.

MegEngine's ``DetEvaluator`` turns a BGR image into ``(data, im_info)`` with
``process_inputs(image, 800, 1333)``; the model returns per-class scores and boxes; and
``predict`` applies the score threshold, per-class NMS and the 100-detection cap, returning a
``(K, 6)`` float64 array ``[x1, y1, x2, y2, score, cls0]`` in original-image pixels
(``cls0`` 0-based over the 80 COCO classes). The same functions here take a
:class:`~fasterrcnn.FasterRCNN`::

    data, im_info = process_inputs(cv2.imread("photo.jpg"), 800, 1333)
    dets = predict(model, data, im_info)
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import torch

from fasterrcnn.config import InputConfig, PostprocessConfig
from fasterrcnn.data.transforms import ImageBatch, batch_images, normalize, resized_size
from fasterrcnn.modeling.faster_rcnn import FasterRCNN, size_tensor
from fasterrcnn.ops.nms import nms

# MegEngine's resize rule, whatever the model: scale the short side, cap the long one, round.
_MEGENGINE_RESIZE = InputConfig(
    channel_order="BGR", pixel_divisor=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
    size_rounding="round", resize_backend="cv2_linear",
)  # fmt: skip


def get_hw_by_short_size(
    height: int, width: int, short_size: int, max_size: int
) -> tuple[int, int]:
    """Network-input (h, w) for an image: MegEngine's ``DetEvaluator.get_hw_by_short_size``."""
    cfg = replace(_MEGENGINE_RESIZE, short_side=short_size, max_side=max_size)
    return resized_size(height, width, cfg)


def process_inputs(
    image: np.ndarray, short_size: int, max_size: int, flip: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """HxWx3 uint8 BGR image -> ``data`` (1, 3, h, w) float32 (BGR, 0..255, resized with cv2
    INTER_LINEAR) and ``im_info`` (1, 4) float32 ``[h, w, orig_h, orig_w]``."""
    orig_h, orig_w = image.shape[:2]
    h, w = get_hw_by_short_size(orig_h, orig_w, short_size, max_size)
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    if flip:
        resized = resized[:, ::-1]
    data = np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32)
    im_info = np.array([[h, w, orig_h, orig_w]], dtype=np.float32)
    return data, im_info


def _batch(model: FasterRCNN, data: np.ndarray, im_info: np.ndarray) -> ImageBatch:
    cfg = model.config.input
    pixels = torch.from_numpy(np.asarray(data, dtype=np.float32))[0]
    if cfg.channel_order == "RGB":
        pixels = pixels.flip(0)
    image = normalize(pixels, cfg)
    h, w, orig_h, orig_w = (int(v) for v in np.asarray(im_info).reshape(-1)[:4])
    return ImageBatch(batch_images([image], cfg), [(h, w)], [(orig_h, orig_w)]).to(model.device)


@torch.inference_mode()
def pred_scores_and_boxes(
    model: FasterRCNN, data: np.ndarray, im_info: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The model's raw inference output, as MegEngine's ``FasterRCNN.forward`` returns it:
    ``pred_score`` (R, 80) softmax without the background column, and ``pred_boxes``
    (R, 80, 4) class-specific boxes in original-image pixels, clipped to the image."""
    batch = _batch(model, data, im_info)
    raw = model(batch.tensor, batch.image_sizes)
    scores, boxes, _ = model.postprocess.class_boxes(
        raw.class_logits, raw.box_deltas, raw.rois[:, 1:],
        size_tensor(batch.image_sizes, batch.tensor.device),
        size_tensor(batch.original_sizes, batch.tensor.device),
    )  # fmt: skip
    return scores.cpu().numpy(), boxes.cpu().numpy()


def predict(model: FasterRCNN, data: np.ndarray, im_info: np.ndarray) -> np.ndarray:
    """MegEngine's ``DetEvaluator.predict``: (K, 6) float64 ``[x1, y1, x2, y2, score, cls0]``.

    Per class in ascending order: scores above the threshold, NMS; the classes' rows are
    concatenated and, when more than the cap remain, sorted by score (stable) and cut.
    """
    scores, boxes = pred_scores_and_boxes(model, data, im_info)
    return detections_array(scores, boxes, model.config.postprocess)


def detections_array(scores: np.ndarray, boxes: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    """``pred_score`` (R, C) and ``pred_boxes`` (R, C, 4) -> MegEngine's (K, 6) detections."""
    rows = []
    for cls in range(scores.shape[1]):
        keep = np.flatnonzero(scores[:, cls] > cfg.score_threshold)
        if keep.size == 0:
            continue
        cls_boxes = torch.from_numpy(boxes[keep, cls])
        cls_scores = torch.from_numpy(scores[keep, cls])
        kept = nms(cls_boxes, cls_scores, cfg.nms_threshold).numpy()
        block = np.concatenate(
            [boxes[keep[kept], cls], scores[keep[kept], cls, None], np.full((kept.size, 1), cls)],
            axis=1,
        )
        rows.append(block.astype(np.float64))
    dets = np.concatenate(rows) if rows else np.zeros((0, 6))
    if len(dets) > cfg.max_detections:
        order = np.argsort(-dets[:, 4], kind="stable")[: cfg.max_detections]
        dets = dets[order]
    return dets
