"""Drawing detections onto images."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from fasterrcnn.inference.detections import Detections


def class_color(category_id: int) -> tuple[int, int, int]:
    """A stable, saturated BGR colour per category id."""
    hue = (category_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(image_rgb: np.ndarray, detections: Detections) -> np.ndarray:
    """A BGR copy of ``image_rgb`` with each detection's box, class name and score drawn."""
    canvas = np.ascontiguousarray(image_rgb[:, :, ::-1]).copy()
    scale = max(canvas.shape[:2]) / 1000
    thickness = max(1, round(2 * scale))
    font_scale = max(0.4, 0.5 * scale)
    # Lowest scores first, so the most confident boxes end up on top.
    for i in np.argsort(detections.scores, kind="stable"):
        x1, y1, x2, y2 = (round(float(v)) for v in detections.boxes[i])
        color = class_color(int(detections.category_ids[i]))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        label = f"{detections.class_names[i]} {detections.scores[i]:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = max(y1 - th - base - 2, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(
            canvas,
            label,
            (x1 + 1, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return canvas
