"""Drawing detections and ground truth onto images."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from fasterrcnn.inference.detections import Detections

IGNORED_COLOR = (160, 160, 160)  # BGR
DASH, GAP = 6, 4  # pixels of an ignored region's dashed outline
FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_color(category_id: int) -> tuple[int, int, int]:
    """A stable, saturated BGR colour per category id."""
    hue = (category_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(
    image_rgb: np.ndarray, detections: Detections, *, channels: str = "BGR"
) -> np.ndarray:
    """A copy of ``image_rgb`` in ``channels`` order ("BGR", for OpenCV's encoders, or "RGB")
    with each detection's box, class name, score and track id (``#7``, when tracked) drawn."""
    if channels not in ("BGR", "RGB"):
        raise ValueError(f"channels must be 'BGR' or 'RGB', not {channels!r}")
    flip = channels == "RGB"
    canvas = np.ascontiguousarray(image_rgb if flip else image_rgb[:, :, ::-1]).copy()
    scale = max(canvas.shape[:2]) / 1000
    thickness = max(1, round(2 * scale))
    font_scale = max(0.4, 0.5 * scale)
    tracks = detections.track_ids
    # Lowest scores first, so the most confident boxes end up on top.
    for i in np.argsort(detections.scores, kind="stable"):
        x1, y1, x2, y2 = (round(float(v)) for v in detections.boxes[i])
        color = class_color(int(detections.category_ids[i]))
        if flip:
            color = color[::-1]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        label = f"{detections.class_names[i]} {detections.scores[i]:.2f}"
        if tracks is not None and tracks[i] >= 0:
            label += f" #{int(tracks[i])}"
        (tw, th), base = cv2.getTextSize(label, FONT, font_scale, 1)
        top = max(y1 - th - base - 2, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(canvas, label, (x1 + 1, top + th + 1), FONT, font_scale, (0, 0, 0), 1,
                    cv2.LINE_AA)  # fmt: skip
    return canvas


def line_thickness(height: int, width: int) -> int:
    """Outline thickness for an image of this size: 1 pixel per 400 of its longer side."""
    return max(1, round(max(height, width) / 400))


def draw_ground_truth(
    image_rgb: np.ndarray, annotations: list[dict[str, Any]], names: Mapping[int, str]
) -> np.ndarray:
    """A BGR copy of ``image_rgb`` with each annotation's box and class name drawn (ignored
    regions first, dashed and grey, so the boxes stay on top). ``names``: category id ->
    class name."""
    canvas = np.ascontiguousarray(image_rgb[:, :, ::-1]).copy()
    height, width = canvas.shape[:2]
    thickness = line_thickness(height, width)
    font_scale = max(0.4, 0.5 * max(height, width) / 1000)
    ordered = sorted(annotations, key=lambda a: -int(a.get("iscrowd", 0)))
    for annotation in ordered:
        box = box_pixels(annotation["bbox"], height, width)
        if box is None:
            continue
        category_id = int(annotation["category_id"])
        name = names.get(category_id, str(category_id))
        if annotation.get("iscrowd", 0):
            color, label = IGNORED_COLOR, f"{name} (ignored)"
            dashed_rectangle(canvas, box, color, thickness)
        else:
            color, label = class_color(category_id), name
            solid_rectangle(canvas, box, color, thickness)
        draw_tag(canvas, label, box[:2], color, font_scale)
    return canvas


def box_pixels(xywh: Sequence[float], height: int, width: int) -> tuple[int, int, int, int] | None:
    """The first and last pixel columns and rows ``(x1, y1, x2, y2)`` that an (x, y, w, h)
    box covers, clipped to the image; None for a box wholly outside it."""
    x, y, w, h = (float(v) for v in xywh)
    x1, y1 = max(math.floor(x), 0), max(math.floor(y), 0)
    x2 = min(max(math.ceil(x + w) - 1, x1), width - 1)
    y2 = min(max(math.ceil(y + h) - 1, y1), height - 1)
    if x1 >= width or y1 >= height or x2 < 0 or y2 < 0:
        return None
    return x1, y1, x2, y2


def solid_rectangle(
    canvas: np.ndarray, box: tuple[int, int, int, int], color: tuple[int, int, int], thickness: int
) -> None:
    """A ``thickness``-pixel outline inside ``box``'s edges: it covers nothing around it."""
    x1, y1, x2, y2 = box
    for k in range(thickness):
        cv2.rectangle(canvas, (x1 + k, y1 + k), (x2 - k, y2 - k), color, 1)


def dashed_rectangle(
    canvas: np.ndarray, box: tuple[int, int, int, int], color: tuple[int, int, int], thickness: int
) -> None:
    x1, y1, x2, y2 = box
    for k in range(thickness):
        left, top, right, bottom = x1 + k, y1 + k, x2 - k, y2 - k
        for start in range(left, right + 1, DASH + GAP):
            end = min(start + DASH - 1, right)
            cv2.line(canvas, (start, top), (end, top), color, 1)
            cv2.line(canvas, (start, bottom), (end, bottom), color, 1)
        for start in range(top, bottom + 1, DASH + GAP):
            end = min(start + DASH - 1, bottom)
            cv2.line(canvas, (left, start), (left, end), color, 1)
            cv2.line(canvas, (right, start), (right, end), color, 1)


def draw_tag(
    canvas: np.ndarray,
    text: str,
    corner: tuple[int, int],
    color: tuple[int, int, int],
    font_scale: float,
) -> None:
    """``text`` on a filled ``color`` tag above the box's top-left corner (inside the box's
    top when there is no room above it)."""
    x1, y1 = corner
    (tw, th), base = cv2.getTextSize(text, FONT, font_scale, 1)
    tag = th + base + 2
    top = y1 - tag if y1 >= tag else y1
    cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + tag - 1), color, -1)
    cv2.putText(canvas, text, (x1 + 1, top + th + 1), FONT, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
