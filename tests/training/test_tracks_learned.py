"""Tracks end to end (slow): the trained model of the session (helpers/scratch_model.py)
and ``fasterrcnn detect --track`` on a lossless video that pans across two of its training
images side by side, so that every object moves across the frame, the left image's objects
leaving on the left and the right image's entering on the right. Each object's identity is
known from its annotation; the track ids must follow them: one id per object while it is
seen, never the same id for two objects.

The objects judged are those of COCO's medium size or larger (the shorter side at least 32 px
at the training scale). This model, trained on 8 images, detects smaller ones only now and
then, and in several overlapping boxes of different classes. No tracker can follow such
detections. In a trial run, 8 of the 10 smaller objects matched in 5 or more frames changed id
for good, while the 5 larger ones kept theirs (one of them was on another id for one frame).
"""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pytest
from helpers.cli_runner import run_cli
from helpers.scratch_model import ANNOTATIONS, IMAGES, SHORT_SIDE, TWO_THREADS, Scratch
from helpers.videos import write_video

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not __import__("importlib").util.find_spec("trackers"), reason="trackers is not installed"
)]  # fmt: skip

PICTURES = ("000000000139.jpg", "000000087038.jpg")  # many objects each, of several classes
WINDOW = (480, SHORT_SIDE)  # (w, h): the model runs it at 1.0, its training scale
FRAMES = 60
MATCH_IOU, SCORE, MATCH_SCORE = 0.5, 0.3, 0.5
MIN_SIDE = 32  # px, at the training scale


def _strip() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two pictures at the training scale, side by side (BGR), and their objects'
    boxes (xyxy) and category ids, identity = row."""
    data = json.loads(ANNOTATIONS.read_text())
    by_name = {image["file_name"]: image["id"] for image in data["images"]}
    cells, boxes, ids, x0 = [], [], [], 0
    for name in PICTURES:
        pixels = cv2.imread(str(IMAGES / name))
        scale = SHORT_SIDE / min(pixels.shape[:2])
        size = (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale))
        cells.append(cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR))
        for ann in data["annotations"]:
            if ann["image_id"] == by_name[name] and not ann.get("iscrowd"):
                x, y, w, h = (v * scale for v in ann["bbox"])
                boxes.append([x + x0, y, x + w + x0, y + h])
                ids.append(ann["category_id"])
        x0 += size[0]
    height = min(cell.shape[0] for cell in cells)
    strip = np.hstack([cell[:height] for cell in cells])
    return strip, np.asarray(boxes), np.asarray(ids)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    sides = np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2])
    inter = np.prod(np.clip(sides, 0, None), axis=1)
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (np.prod(box[2:] - box[:2]) + areas - inter)


def test_track_ids_follow_the_objects(scratch: Scratch, tmp_path) -> None:
    strip, boxes, categories = _strip()
    width, height = WINDOW
    travel = strip.shape[1] - width
    lefts = [round(travel * k / (FRAMES - 1)) for k in range(FRAMES)]
    frames = [np.ascontiguousarray(strip[:height, x : x + width, ::-1]) for x in lefts]
    video = write_video(tmp_path / "pan.mkv", frames)  # ffv1: the frames exactly
    out = tmp_path / "out"
    run = run_cli(
        ["detect", video, "--weights", scratch.model, "--track", "--no-draw",
         "--score-threshold", SCORE, "--out", out],
        tmp_path, env=TWO_THREADS,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in (out / "pan.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    seen: dict[int, list[int]] = {}  # identity -> the track ids it was matched with
    for line, left in zip(lines, lefts, strict=True):
        shifted = boxes - [left, 0, left, 0]
        free = (shifted[:, 0] >= 0) & (shifted[:, 2] <= width) & (shifted[:, 3] <= height)
        for det in sorted(line["detections"], key=lambda d: -d["score"]):  # one to one
            if det["score"] < MATCH_SCORE:
                break
            overlaps = _iou(np.asarray(det["box"]), shifted)
            overlaps[~free | (categories != det["category_id"])] = 0
            if overlaps.max(initial=0) >= MATCH_IOU and det.get("track_id") is not None:
                free[int(overlaps.argmax())] = False
                seen.setdefault(int(overlaps.argmax()), []).append(det["track_id"])
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    followed = {i: ids for i, ids in seen.items() if len(ids) >= 5 and sides[i] >= MIN_SIDE}
    print(f"{len(boxes)} objects, {len(followed)} of {MIN_SIDE} px or more matched in 5 or more "
          f"of {FRAMES} frames: "
          + ", ".join(f"{i}: {dict(Counter(ids))}" for i, ids in followed.items()))  # fmt: skip
    assert len(followed) >= 4  # objects of both pictures, so that the claim says something
    assert {boxes[i][0] < strip.shape[1] / 2 for i in followed} == {True, False}
    majority = {}
    for identity, ids in followed.items():
        track, count = Counter(ids).most_common(1)[0]
        assert count >= len(ids) - 1, (identity, ids)  # at most one frame on another id
        majority[identity] = track
    assert len(set(majority.values())) == len(majority), majority  # one object, one id
