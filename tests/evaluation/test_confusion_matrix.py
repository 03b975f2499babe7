"""The confusion matrix's rule against hand-built cases (every cell of a 3-class matrix, crowd
pairs, ties) and against a slow, literal implementation of the rule on the mini COCO set's
ground truth with perturbed detections."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.seeded import DATA
from helpers.three_classes import BIRD, CAT, DOG, slot_box, three_class_dataset

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.evaluation.confusion import box_iou_xywh, confusion_matrix

BG = 3  # the background index of a 3-class matrix


def test_every_cell_of_a_three_class_matrix() -> None:
    # (gt class, detected class) of boxes matched exactly; None: no box or no detection.
    plan = [
        (CAT, CAT), (CAT, CAT), (CAT, DOG), (CAT, BIRD), (CAT, None),
        (DOG, CAT), (DOG, DOG), (DOG, BIRD), (DOG, None), (DOG, None),
        (BIRD, CAT), (BIRD, DOG), (BIRD, BIRD), (BIRD, BIRD), (BIRD, BIRD), (BIRD, None),
        (None, CAT), (None, DOG), (None, DOG), (None, BIRD),
    ]  # fmt: skip
    annotations, results = [], []
    for slot, (gt, det) in enumerate(plan):
        image = 1 + slot % 2
        if gt is not None:
            annotations.append((image, gt, slot_box(slot), 0))
        if det is not None:
            results.append([image, *slot_box(slot), 0.5 + slot / 100, det])
    results.append([1, *slot_box(30), 0.05, CAT])  # below the score threshold: not counted
    matrix = confusion_matrix(
        three_class_dataset(annotations), np.array(results), score_threshold=0.1
    )
    assert matrix.classes == ("cat", "dog", "bird", "background")
    assert matrix.matrix.tolist() == [
        [2, 1, 1, 1],
        [1, 1, 1, 2],
        [1, 1, 3, 1],
        [1, 2, 1, 0],
    ]
    assert json.loads(json.dumps(matrix.to_dict()))["matrix"] == matrix.matrix.tolist()


def test_iou_threshold_is_inclusive() -> None:
    # A detection shifted by 5 px of a 10 x 10 box: IoU 50 / 150 = 1/3.
    dataset = three_class_dataset([(1, CAT, [0, 0, 10, 10], 0)])
    shifted = np.array([[1, 5, 0, 10, 10, 0.9, DOG]])
    assert confusion_matrix(dataset, shifted, iou_threshold=1 / 3).matrix[0, 1] == 1
    missed = confusion_matrix(dataset, shifted, iou_threshold=0.34).matrix
    assert (missed[0, BG], missed[BG, 1]) == (1, 1)


def test_crowd_pairs_count_nowhere_and_take_the_detection() -> None:
    dataset = three_class_dataset([
        (1, CAT, [0, 0, 100, 100], 1),  # a crowd region
        (1, CAT, [0, 0, 60, 100], 0),  # IoU 0.6 with the detection below
        (1, DOG, [300, 0, 10, 10], 1),  # a crowd region no detection reaches
    ])  # fmt: skip
    # IoU 0.9 with the crowd box, 0.6 / 0.9 = 0.667 with the cat: the crowd pair comes first.
    detection = np.array([[1, 0, 0, 90, 100, 0.8, CAT]])
    matrix = confusion_matrix(dataset, detection).matrix
    expected = np.zeros((4, 4), np.int64)
    expected[0, BG] = 1  # the cat box is missed; the detection counts nowhere
    np.testing.assert_array_equal(matrix, expected)


@pytest.mark.parametrize(("cat_score", "dog_score", "paired"), [(0.9, 0.6, 0), (0.6, 0.9, 1)])
def test_equal_ious_go_to_the_higher_score(cat_score, dog_score, paired) -> None:
    dataset = three_class_dataset([(1, CAT, [0, 0, 10, 10], 0)])
    same_box = [[1, 0, 0, 10, 10, cat_score, CAT], [1, 0, 0, 10, 10, dog_score, DOG]]
    matrix = confusion_matrix(dataset, np.array(same_box)).matrix
    other = 1 - paired
    assert (matrix[0, paired], matrix[BG, other], matrix.sum()) == (1, 1, 2)


def test_bad_input() -> None:
    dataset = three_class_dataset([(1, CAT, [0, 0, 10, 10], 0)])
    with pytest.raises(DatasetError, match=r"category ids that are not the dataset's: \[7\]"):
        confusion_matrix(dataset, np.array([[1, 0, 0, 5, 5, 0.9, 7]]))
    with pytest.raises(ValueError, match="score_threshold must be in"):
        confusion_matrix(dataset, np.zeros((0, 7)), score_threshold=1.5)
    empty = confusion_matrix(dataset, np.zeros((0, 7))).matrix  # no detection: all missed
    assert (empty[0, BG], empty.sum()) == (1, 1)


def _literal_matrix(dataset: CocoDataset, results: np.ndarray, iou_t: float, score_t: float):
    """The rule read word by word, one pair at a time, with plain Python loops."""
    ids = list(dataset.classes.category_ids)
    k = len(ids)
    matrix = [[0] * (k + 1) for _ in range(k + 1)]
    for image in dataset.images:
        gts = dataset.annotations(image.id)
        dets = [r for r in results.tolist() if r[0] == image.id and r[5] >= score_t]

        def iou(g: dict, d: list) -> float:
            gx, gy, gw, gh = g["bbox"]
            dx, dy, dw, dh = d[1:5]
            w = max(0.0, min(gx + gw, dx + dw) - max(gx, dx))
            h = max(0.0, min(gy + gh, dy + dh) - max(gy, dy))
            union = gw * gh + dw * dh - w * h
            return w * h / union if union > 0 else 0.0

        free_g, free_d = set(range(len(gts))), set(range(len(dets)))
        while True:
            candidates = [
                (iou(gts[g], dets[d]), dets[d][5], -d, -g, g, d)
                for g in free_g
                for d in free_d
                if iou(gts[g], dets[d]) >= iou_t
            ]
            if not candidates:
                break
            *_, g, d = max(candidates)
            free_g.discard(g)
            free_d.discard(d)
            if not gts[g]["iscrowd"]:
                matrix[ids.index(gts[g]["category_id"])][ids.index(int(dets[d][6]))] += 1
        for g in free_g:
            if not gts[g]["iscrowd"]:
                matrix[ids.index(gts[g]["category_id"])][k] += 1
        for d in free_d:
            matrix[k][ids.index(int(dets[d][6]))] += 1
    return matrix


def test_equals_a_literal_implementation_on_the_mini_set() -> None:
    dataset = CocoDataset.load(DATA / "coco_mini" / "instances_val2017_boxes.json")
    rng = np.random.default_rng(0)
    category_ids = np.array(dataset.classes.category_ids)
    rows = []
    for image in dataset.images:
        for annotation in dataset.annotations(image.id):
            x, y, w, h = annotation["bbox"]
            for _ in range(rng.integers(0, 3)):  # missed, found once or twice
                jitter = rng.normal(0, 0.15, 4) * [w, h, w, h]
                category = (
                    annotation["category_id"] if rng.random() < 0.7 else rng.choice(category_ids)
                )
                rows.append([image.id, x + jitter[0], y + jitter[1], abs(w + jitter[2]),
                             abs(h + jitter[3]), round(rng.random(), 2), category])  # fmt: skip
        for _ in range(rng.integers(0, 3)):  # false positives anywhere
            rows.append([image.id, *rng.uniform(0, 300, 2), *rng.uniform(5, 200, 2),
                         round(rng.random(), 2), rng.choice(category_ids)])  # fmt: skip
    results = np.array(rows)
    for iou_t, score_t in ((0.5, 0.3), (0.3, 0.0)):
        matrix = confusion_matrix(dataset, results, iou_threshold=iou_t, score_threshold=score_t)
        assert matrix.matrix.tolist() == _literal_matrix(dataset, results, iou_t, score_t)
    assert matrix.matrix[:-1, :-1].trace() > 500 and matrix.matrix[-1].sum() > 100


def test_iou_matches_hand_values() -> None:
    iou = box_iou_xywh(np.array([[0, 0, 10, 10]]), np.array([[5, 5, 10, 10], [20, 0, 1, 1]]))
    np.testing.assert_allclose(iou, [[25 / 175, 0.0]])
