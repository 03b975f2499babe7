"""Small hand-built datasets of three classes (ids 1, 2 and 5: not contiguous), for the tests
of rules that pair boxes with detections."""

from __future__ import annotations

from fasterrcnn.data.coco import CocoDataset

CLASSES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 5, "name": "bird"}]
CAT, DOG, BIRD = 1, 2, 5


def three_class_dataset(
    annotations: list[tuple[int, int, list[float], int]], images: int = 2
) -> CocoDataset:
    """Images 1 to ``images`` with (image, category, xywh, iscrowd) annotations."""
    return CocoDataset.load({
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(1, images + 1)],
        "annotations": [
            {"image_id": i, "category_id": c, "bbox": box, "iscrowd": crowd}
            for i, c, box, crowd in annotations
        ],
        "categories": CLASSES,
    })  # fmt: skip


def slot_box(slot: int) -> list[float]:
    """Disjoint 10 x 10 boxes (x, y, w, h), one per slot."""
    return [20.0 * slot, 0.0, 10.0, 10.0]
