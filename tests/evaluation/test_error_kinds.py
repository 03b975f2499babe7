"""The errors-by-kind rule against hand-built cases (every kind in a 3-class dataset, crowd
regions, ties, the order of the steps, exact IoU boundaries) and against a slow, literal
implementation of the rule on the mini COCO set's ground truth with perturbed detections."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import numpy as np
import pytest
from helpers.seeded import DATA
from helpers.three_classes import BIRD, CAT, DOG, slot_box, three_class_dataset

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.evaluation.confusion import box_iou_xywh
from fasterrcnn.evaluation.error_kinds import (
    ERROR_KINDS,
    FALSE_POSITIVE_KINDS,
    IGNORED,
    TRUE_POSITIVE,
    count_errors,
)

TP, IG = TRUE_POSITIVE, IGNORED
DUP, WRONG, POOR, BG = FALSE_POSITIVE_KINDS


def _outcomes(counts) -> list[tuple[str, ...]]:
    return [image.outcomes for image in counts.images]


def test_every_kind_in_a_three_class_dataset() -> None:
    dataset = three_class_dataset([
        (1, CAT, slot_box(0), 0),
        (1, DOG, slot_box(1), 0),  # only a cat detection on it: missed
        (1, BIRD, slot_box(2), 0),  # only a poorly placed bird: missed
        (1, CAT, slot_box(4), 1),  # a crowd region
        (1, DOG, slot_box(5), 0),  # no detection: missed
        (1, CAT, slot_box(6), 0),  # its detection is under the score threshold: missed
        (2, BIRD, slot_box(0), 0),
        (2, DOG, slot_box(1), 0),  # only a bird at IoU 1/3: missed
        (2, DOG, slot_box(2), 0),
        (2, BIRD, slot_box(3), 1),  # a crowd region no detection reaches: not missed
    ])  # fmt: skip
    results = np.array([
        [1, *slot_box(0), 0.9, CAT],  # true positive
        [1, *slot_box(0), 0.8, CAT],  # duplicate
        [1, *slot_box(1), 0.7, CAT],  # wrong class (on the dog)
        [1, 40, 0, 10, 4, 0.6, BIRD],  # poor localization (IoU 0.4)
        [1, *slot_box(3), 0.5, DOG],  # background
        [1, 82, 2, 4, 4, 0.4, CAT],  # ignored: inside the crowd box (plain IoU only 0.16)
        [1, *slot_box(6), 0.05, CAT],  # under the score threshold
        [2, 25, 0, 10, 10, 0.3, BIRD],  # background: IoU 1/3 with a dog only
        [2, *slot_box(0), 0.95, BIRD],  # true positive
        [2, *slot_box(2), 0.6, DOG],  # true positive
    ])  # fmt: skip
    errors = count_errors(dataset, results, score_threshold=0.1)
    assert errors.classes == ("cat", "dog", "bird")
    # Columns: duplicate, wrong_class, poor_localization, background, missed.
    assert errors.counts.tolist() == [[1, 1, 0, 0, 1], [0, 0, 0, 1, 3], [0, 0, 1, 1, 1]]
    assert errors.counts.dtype == errors.true_positives.dtype == np.int64
    assert errors.true_positives.tolist() == [1, 1, 1]
    assert [image.image_id for image in errors.images] == [1, 2]
    assert _outcomes(errors) == [(TP, DUP, WRONG, POOR, BG, IG), (TP, TP, BG)]
    assert [image.missed for image in errors.images] == [(1, 2, 4, 5), (1,)]
    np.testing.assert_array_equal(errors.images[0].detections, results[:6])
    np.testing.assert_array_equal(errors.images[1].detections, results[[8, 9, 7]])
    assert [(i.false_positives, i.errors) for i in errors.images] == [(4, 8), (1, 2)]
    assert (errors.score_threshold, errors.iou_threshold, errors.background_iou) == (0.1, 0.5, 0.1)


def test_crowd_regions_take_detections_of_their_class_and_are_never_missed() -> None:
    dataset = three_class_dataset([
        (1, CAT, [0, 0, 100, 100], 1),
        (1, CAT, [0, 0, 60, 100], 0),
        (2, DOG, [0, 0, 10, 10], 1),  # no detection: not missed
    ])  # fmt: skip
    results = np.array([
        [1, 0, 0, 50, 100, 0.9, CAT],  # IoU 5/6 with the cat: a true positive before ignored
        [1, 0, 0, 50, 100, 0.8, CAT],  # the cat is matched: ignored before duplicate
        [1, 10, 10, 10, 10, 0.7, DOG],  # inside a crowd of cats: background
        [1, 90, 0, 20, 10, 0.6, CAT],  # half of it in the crowd region (exactly 0.5): ignored
        [1, 95, 0, 20, 10, 0.5, CAT],  # a quarter of it in the region: background
    ])  # fmt: skip
    errors = count_errors(dataset, results, score_threshold=0.0)
    assert _outcomes(errors) == [(TP, IG, BG, IG, BG), ()]
    assert [image.missed for image in errors.images] == [(), ()]
    assert errors.counts.tolist() == [[0, 0, 0, 1, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]
    assert errors.true_positives.tolist() == [1, 0, 0]


@pytest.mark.parametrize("swap", [False, True])
def test_equal_scores_go_in_results_order(swap: bool) -> None:
    dataset = three_class_dataset([(1, CAT, [0, 0, 10, 10], 0)])
    # IoU 1 and 0.6 with the cat, the same score: the one first in the results is matched.
    rows = [[1, 0, 0, 10, 10, 0.7, CAT], [1, 0, 0, 10, 6, 0.7, CAT]]
    results = np.array(rows[::-1] if swap else rows)
    errors = count_errors(dataset, results, score_threshold=0.5)
    assert _outcomes(errors) == [(TP, DUP), ()]
    np.testing.assert_array_equal(errors.images[0].detections, results)


@pytest.mark.parametrize("swap", [False, True])
def test_equal_ious_go_to_the_first_box(swap: bool) -> None:
    left, right = [0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 10.0, 10.0]
    boxes = [right, left] if swap else [left, right]
    dataset = three_class_dataset([(1, CAT, boxes[0], 0), (1, CAT, boxes[1], 0)])
    detection = [1.0, 0.0, 10.0, 10.0]  # IoU 90 / 110 with both
    iou = box_iou_xywh(np.array([detection]), np.array(boxes))
    assert iou[0, 0] == iou[0, 1] == 90 / 110
    errors = count_errors(dataset, np.array([[1, *detection, 0.9, CAT]]), score_threshold=0.0)
    assert errors.images[0].outcomes == (TP,)
    assert errors.images[0].missed == (1,)
    assert errors.counts[0].tolist() == [0, 0, 0, 0, 1]


def test_the_first_step_that_applies_wins() -> None:
    dataset = three_class_dataset([
        (1, CAT, slot_box(0), 0),
        (1, DOG, slot_box(0), 0),  # the same box as the cat
        (1, CAT, [40, 0, 10, 10], 0),
        (1, DOG, [44, 0, 10, 10], 0),  # IoU 0.6 with the detection at x 43, 0.4 with the cat
        (1, BIRD, [80, 0, 10, 10], 0),
    ])  # fmt: skip
    results = np.array([
        [1, *slot_box(0), 0.9, CAT],  # true positive
        [1, *slot_box(0), 0.8, DOG],  # true positive
        [1, *slot_box(0), 0.7, CAT],  # duplicate, though on a dog too
        [1, 0, 0, 10, 6, 0.6, DOG],  # duplicate, though on a cat too
        [1, 44, 0, 10, 6, 0.5, CAT],  # wrong class (dog, IoU 0.6), though poorly on a cat too
        [1, 80, 0, 10, 4, 0.4, CAT],  # background: a bird at IoU 0.4 is another class
        [1, 80, 0, 10, 4, 0.3, BIRD],  # poor localization: its own class at IoU 0.4
    ])  # fmt: skip
    errors = count_errors(dataset, results, score_threshold=0.0)
    assert errors.images[0].outcomes == (TP, TP, DUP, DUP, WRONG, BG, POOR)
    assert errors.images[0].missed == (2, 3, 4)
    assert errors.counts.tolist() == [[1, 1, 0, 1, 1], [1, 0, 0, 0, 1], [0, 0, 1, 0, 1]]
    assert errors.true_positives.tolist() == [1, 1, 0]


def test_iou_boundaries_are_inclusive() -> None:
    gt = [0.0, 0.0, 10.0, 10.0]
    # IoU with the box: 0.5, 0.5, 0.49, 0.1, 0.09 (all exact but 0.49).
    shapes: list[list[float]] = [
        [0, 0, 10, 5],
        [0, 0, 20, 10],
        [0, 0, 10, 4.9],
        [0, 0, 10, 1],
        [0, 0, 10, 0.9],
    ]
    iou = box_iou_xywh(np.array(shapes), np.array([gt]))[:, 0]
    assert (iou[0], iou[1], iou[3]) == (0.5, 0.5, 0.1) and iou[2] < 0.5 and iou[4] < 0.1
    kinds: dict[tuple[int, tuple[float, ...]], str] = {}
    for category in (CAT, DOG):
        for shape in shapes:
            result = np.array([[1, *shape, 0.9, category]])
            errors = count_errors(
                three_class_dataset([(1, CAT, gt, 0)]), result, score_threshold=0.0
            )
            kinds[category, tuple(shape)] = errors.images[0].outcomes[0]
    assert [kinds[CAT, tuple(s)] for s in shapes] == [TP, TP, POOR, POOR, BG]
    assert [kinds[DOG, tuple(s)] for s in shapes] == [WRONG, WRONG, BG, BG, BG]
    # Other thresholds, at the boundaries too.
    result = np.array([[1, 0, 0, 10, 1, 0.9, CAT]])  # IoU 0.1
    dataset = three_class_dataset([(1, CAT, gt, 0)])
    assert count_errors(dataset, result, score_threshold=0, iou_threshold=0.1).true_positives[0]
    one = count_errors(dataset, result, score_threshold=0, iou_threshold=0.2, background_iou=0.2)
    assert one.images[0].outcomes == (BG,)


def test_the_score_threshold_is_inclusive() -> None:
    dataset = three_class_dataset([(1, CAT, slot_box(0), 0), (1, DOG, slot_box(1), 0)])
    results = np.array([[1, *slot_box(0), 0.3, CAT], [1, *slot_box(1), 0.29, DOG]])
    errors = count_errors(dataset, results, score_threshold=0.3)
    assert errors.images[0].outcomes == (TP,)
    np.testing.assert_array_equal(errors.images[0].detections, results[:1])
    assert errors.images[0].missed == (1,)
    assert errors.counts[:, -1].tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"score_threshold": -0.1}, "score_threshold"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"score_threshold": 0.5, "iou_threshold": 1.01}, "iou_threshold"),
        ({"score_threshold": 0.5, "background_iou": -0.1}, "background_iou"),
        ({"score_threshold": 0.5, "iou_threshold": 0.3, "background_iou": 0.4}, "background_iou"),
    ],
)
def test_bad_thresholds(kwargs: dict[str, Any], name: str) -> None:
    dataset = three_class_dataset([(1, CAT, slot_box(0), 0)])
    with pytest.raises(ValueError, match=f"^{name} must be") as error:
        count_errors(dataset, np.zeros((0, 7)), **kwargs)
    assert "\n" not in str(error.value)


def test_unknown_category() -> None:
    dataset = three_class_dataset([(1, CAT, slot_box(0), 0)])
    with pytest.raises(DatasetError, match=r"category ids that are not the dataset's: \[7\]"):
        count_errors(dataset, np.array([[1, *slot_box(0), 0.9, 7]]), score_threshold=0.5)


@pytest.mark.parametrize("empty", [np.zeros((0, 7)), np.zeros(0)])
def test_empty_results_miss_every_non_crowd_box(empty: np.ndarray) -> None:
    dataset = three_class_dataset(
        [(1, CAT, slot_box(0), 0), (1, DOG, slot_box(1), 1), (2, BIRD, slot_box(0), 0)]
    )
    errors = count_errors(dataset, empty, score_threshold=0.5)
    assert errors.counts.tolist() == [[0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]]
    assert errors.true_positives.tolist() == [0, 0, 0]
    assert [(i.outcomes, i.missed, i.detections.shape) for i in errors.images] == [
        ((), (0,), (0, 7)),
        ((), (0,), (0, 7)),
    ]


def test_worst_images_and_image_ids() -> None:
    # Errors per image: 1 -> 2, 2 -> 0, 3 -> 2, 4 -> 3.
    annotations = [
        (1, CAT, slot_box(0), 0), (1, DOG, slot_box(1), 0), (2, CAT, slot_box(0), 0),
        (3, BIRD, slot_box(0), 0), (4, CAT, slot_box(0), 0), (4, CAT, slot_box(1), 0),
    ]  # fmt: skip
    dataset = three_class_dataset(annotations, images=4)
    results = np.array(
        [[2, *slot_box(0), 0.9, CAT], [3, *slot_box(3), 0.9, DOG], [4, *slot_box(5), 0.9, DOG]]
    )
    errors = count_errors(dataset, results, score_threshold=0.5)
    assert [image.errors for image in errors.images] == [2, 0, 2, 3]
    assert [image.image_id for image in errors.worst(10)] == [4, 1, 3]
    assert [image.image_id for image in errors.worst(2)] == [4, 1]
    assert errors.worst(0) == []
    with pytest.raises(ValueError, match="n must be >= 0"):
        errors.worst(-1)
    some = count_errors(dataset, results, score_threshold=0.5, image_ids=[3, 2])
    assert [image.image_id for image in some.images] == [3, 2]
    assert some.counts.sum() == 2 and some.true_positives.tolist() == [1, 0, 0]


def test_to_dict_round_trips_through_json() -> None:
    dataset = three_class_dataset(
        [(1, CAT, slot_box(0), 0), (1, DOG, slot_box(1), 0), (2, BIRD, slot_box(0), 0)]
    )
    results = np.array(
        [[1, *slot_box(0), 0.9, CAT], [1, *slot_box(0), 0.8, CAT], [2, *slot_box(3), 0.7, DOG]]
    )
    errors = count_errors(dataset, results, score_threshold=0.5, iou_threshold=0.6)
    data = json.loads(json.dumps(errors.to_dict()))
    zero = dict.fromkeys(ERROR_KINDS, 0)
    assert data == {
        "kinds": list(ERROR_KINDS),
        "score_threshold": 0.5,
        "iou_threshold": 0.6,
        "background_iou": 0.1,
        "per_class": {
            "cat": {**zero, TP: 1, "duplicate": 1},
            "dog": {**zero, TP: 0, "background": 1, "missed": 1},
            "bird": {**zero, TP: 0, "missed": 1},
        },
        "total": {**zero, TP: 1, "duplicate": 1, "background": 1, "missed": 2},
    }


def _literal(dataset: CocoDataset, results: np.ndarray, score_t: float, iou_t: float, bg_t: float):
    """The rule read word by word, one detection and one box at a time, in plain Python."""
    ids = list(dataset.classes.category_ids)
    counts = [[0] * 5 for _ in ids]
    true_positives = [0] * len(ids)
    images = []
    rows = results.tolist()

    def overlap(box: list[float], crowd: int, det: list[float]) -> float:
        bx, by, bw, bh = box
        dx, dy, dw, dh = det
        w = max(0.0, min(dx + dw, bx + bw) - max(dx, bx))
        h = max(0.0, min(dy + dh, by + bh) - max(dy, by))
        below = dw * dh if crowd else dw * dh + bw * bh - w * h
        return w * h / below if below > 0 else 0.0

    for image in dataset.images:
        gts = dataset.annotations(image.id)
        order = [i for i, r in enumerate(rows) if r[0] == image.id and r[5] >= score_t]
        order.sort(key=lambda i: (-rows[i][5], i))
        matched = [False] * len(gts)
        outcomes = []
        for i in order:
            det = rows[i]
            boxes = []  # (index, same class, crowd, IoU)
            for g, gt in enumerate(gts):
                iou = overlap(gt["bbox"], gt["iscrowd"], det[1:5])
                boxes.append((g, gt["category_id"] == det[6], gt["iscrowd"] == 1, iou))
            best = None
            for g, same, crowd, iou in boxes:
                if same and not crowd and not matched[g] and iou >= iou_t:
                    if best is None or iou > best[1]:
                        best = (g, iou)
            if best is not None:
                matched[best[0]] = True
                outcome = TRUE_POSITIVE
            elif any(same and crowd and iou >= iou_t for _, same, crowd, iou in boxes):
                outcome = IGNORED
            elif any(s and not c and matched[g] and v >= iou_t for g, s, c, v in boxes):
                outcome = "duplicate"
            elif any(not s and not c and v >= iou_t for _, s, c, v in boxes):
                outcome = "wrong_class"
            elif any(s and not c and bg_t <= v < iou_t for _, s, c, v in boxes):
                outcome = "poor_localization"
            else:
                outcome = "background"
            outcomes.append(outcome)
            row = ids.index(int(det[6]))
            if outcome == TRUE_POSITIVE:
                true_positives[row] += 1
            elif outcome != IGNORED:
                counts[row][ERROR_KINDS.index(outcome)] += 1
        missed = [g for g, gt in enumerate(gts) if not gt["iscrowd"] and not matched[g]]
        for g in missed:
            counts[ids.index(gts[g]["category_id"])][4] += 1
        images.append((image.id, [rows[i] for i in order], tuple(outcomes), tuple(missed)))
    return counts, true_positives, images


@cache
def _mini_set() -> tuple[CocoDataset, np.ndarray]:
    """The mini COCO set and its boxes, perturbed (seeded): shifted / scaled, some relabelled,
    some repeated, some small ones inside their box, random boxes anywhere; scores with ties."""
    dataset = CocoDataset.load(DATA / "coco_mini" / "instances_val2017_boxes.json")
    rng = np.random.default_rng(7)
    category_ids = np.array(dataset.classes.category_ids)
    rows = []
    for image in dataset.images:
        for annotation in dataset.annotations(image.id):
            x, y, w, h = annotation["bbox"]
            for _ in range(rng.integers(0, 4)):
                scale = rng.uniform(0.6, 1.4, 2)
                shift = rng.normal(0, 0.2, 2) * [w, h]
                category = annotation["category_id"]
                if rng.random() < 0.2:
                    category = int(rng.choice(category_ids))
                row = [image.id, x + shift[0], y + shift[1], w * scale[0], h * scale[1]]
                rows.append([*row, round(rng.random(), 2), category])
                if rng.random() < 0.2:  # the same box again, another score
                    rows.append([*row, round(rng.random(), 2), category])
            if rng.random() < 0.3:  # a small box inside it
                inner = [x + w / 4, y + h / 4, w / 3, h / 3]
                rows.append([image.id, *inner, round(rng.random(), 2), annotation["category_id"]])
        for _ in range(rng.integers(0, 5)):
            box = [*rng.uniform(0, 400, 2), *rng.uniform(5, 200, 2)]
            rows.append([image.id, *box, round(rng.random(), 2), int(rng.choice(category_ids))])
    return dataset, np.array(rows)


@pytest.mark.parametrize(
    ("score_t", "iou_t", "bg_t"), [(0.0, 0.5, 0.1), (0.45, 0.5, 0.1), (0.3, 0.4, 0.2)]
)
def test_equals_a_literal_implementation_on_the_mini_set(score_t, iou_t, bg_t) -> None:
    dataset, results = _mini_set()
    errors = count_errors(
        dataset, results, score_threshold=score_t, iou_threshold=iou_t, background_iou=bg_t
    )
    counts, true_positives, images = _literal(dataset, results, score_t, iou_t, bg_t)
    assert errors.counts.tolist() == counts
    assert errors.true_positives.tolist() == true_positives
    assert len(errors.images) == len(images) == 160
    for image, (image_id, dets, outcomes, missed) in zip(errors.images, images, strict=True):
        assert (image.image_id, image.outcomes, image.missed) == (image_id, outcomes, missed)
        assert image.detections.tolist() == dets
    # Every kind is reached many times, so the comparison means something.
    assert errors.true_positives.sum() > 300 and (errors.counts.sum(axis=0) > 20).all()
    assert sum(image.outcomes.count(IGNORED) for image in errors.images) > 0


def test_invariants_on_the_mini_set() -> None:
    dataset, results = _mini_set()
    errors = count_errors(dataset, results, score_threshold=0.2)
    index = {category_id: i for i, category_id in enumerate(dataset.classes.category_ids)}
    boxes = np.zeros(len(index), np.int64)
    for image in dataset.images:
        for annotation in dataset.annotations(image.id):
            boxes[index[annotation["category_id"]]] += 1 - annotation["iscrowd"]
    np.testing.assert_array_equal(errors.true_positives + errors.counts[:, -1], boxes)
    false_positives = errors.counts[:, :4].sum()
    assert (
        sum(image.errors for image in errors.images) == false_positives + errors.counts[:, -1].sum()
    )
    assert sum(image.false_positives for image in errors.images) == false_positives
    worst = errors.worst(20)
    assert len(worst) == 20 and all(image.errors > 0 for image in worst)
    keys = [(-image.errors, image.image_id) for image in worst]
    assert keys == sorted(keys)
    chosen = {image.image_id for image in worst}
    assert worst[-1].errors >= max(i.errors for i in errors.images if i.image_id not in chosen)
    with_errors = [image.image_id for image in errors.images if image.errors > 0]
    assert sorted(image.image_id for image in errors.worst(1000)) == sorted(with_errors)
