"""The COCO val2017 slice in tests/fixtures/coco: its files and facts the tests rely on."""

from __future__ import annotations

from helpers.seeded import DATA

COCO_DIR = DATA / "coco"
ANN_FILE = COCO_DIR / "instances_val2017.json"
IMAGES = COCO_DIR / "val2017"
EMPTY_IMAGES = (58636, 226111)  # images without annotations
SUBSET = [139, 58636, 87038, 331352]
# pycocotools' precision is tp / (tp + fp + np.spacing(1)): 1 / (1 + 2**-52) = 1 - 2**-52 where
# a precision-recall curve has a single valid detection, a true positive (one-instance classes).
LONE_TP_PRECISION = 1 - 2**-52
