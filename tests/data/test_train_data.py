"""Training data: annotation filtering, augmented samples, collate and the grouped sampler."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from itertools import islice

import numpy as np
import pytest
import torch
from helpers.seeded import DATA
from torch.utils.data import DataLoader

from fasterrcnn.config import ClassTable, InputConfig
from fasterrcnn.data.coco import CocoDataset, DatasetError
from fasterrcnn.data.group_sampler import (
    GroupedBatchSampler,
    SampleKey,
    epoch_order,
    sample_seed,
)
from fasterrcnn.data.images import ImageError, read_image
from fasterrcnn.data.train_dataset import TALL, UNSIZED, WIDE, TrainingDataset
from fasterrcnn.data.training_batch import TrainingBatch, collate_training
from fasterrcnn.data.transforms import pad_value, preprocess_image, resized_size
from fasterrcnn.zoo.presets import MEGENGINE_0X, TORCHVISION_R50_FPN

COCO_DIR = DATA / "coco"
ANN_FILE = COCO_DIR / "instances_val2017.json"
IMAGES = COCO_DIR / "val2017"
TV = TORCHVISION_R50_FPN.config.input  # RGB, floor rule, torch bilinear, pad 0 after normalize
MGE = MEGENGINE_0X.input  # BGR, round rule, cv2, pad 0 before normalize (-mean / std after)
PIL = replace(TV, resize_backend="pil_bilinear")
CONFIGS = {"torch": TV, "cv2": MGE, "pil": PIL}
SIDES = (640, 672, 704, 736, 768, 800)


@pytest.fixture(scope="module")
def coco(dataset) -> CocoDataset:
    return dataset


def training(coco: CocoDataset, cfg: InputConfig = TV, **kwargs) -> TrainingDataset:
    options = {"short_sides": SIDES, "max_side": 1333, "flip_prob": 0.5, **kwargs}
    return TrainingDataset(coco, coco.classes, cfg, **options)


# --- filtering ---------------------------------------------------------------------------


def test_real_slice_counts_and_boxes_match_the_json(coco, raw):
    data = training(coco, drop_empty=True)
    sizes = {image["id"]: (image["height"], image["width"]) for image in raw["images"]}
    category_index = {c: i for i, c in enumerate(sorted(c["id"] for c in raw["categories"]))}
    usable = [a for a in raw["annotations"] if a["iscrowd"] == 0]
    kept_ids = [i["id"] for i in raw["images"] if any(a["image_id"] == i["id"] for a in usable)]
    assert kept_ids == [139, 802, 10764, 87038, 184324, 262227, 331352, 536038]
    assert data.image_ids == kept_ids and len(data) == 8

    def outside(a: dict) -> bool:
        x, y, w, h = a["bbox"]
        height, width = sizes[a["image_id"]]
        return x < 0 or y < 0 or x + w > width or y + h > height

    counts = data.counts
    assert (counts.images_kept, counts.images_dropped) == (8, 2)  # 58636, 226111: no annotation
    assert counts.crowd_dropped == sum(a["iscrowd"] for a in raw["annotations"]) == 2
    assert counts.boxes_kept == len(usable) == 88
    assert counts.boxes_clipped == sum(map(outside, usable))
    assert (counts.outside_classes_dropped, counts.degenerate_dropped) == (0, 0)
    assert (counts.background_kept, counts.crowd_images_dropped) == (0, 0)
    assert data.summary() == (
        f"training images: 8 kept (0 of them background-only), 2 dropped without a usable "
        f"box, 0 dropped with only crowd boxes; boxes: 88 kept ({counts.boxes_clipped} "
        f"clipped to the image), dropped: 2 crowd, 0 of categories outside the class table, "
        f"0 degenerate"
    )
    for index, image_id in enumerate(kept_ids):
        mine = [a for a in usable if a["image_id"] == image_id]
        boxes, labels = data.boxes(index)
        expected = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in mine)]
        np.testing.assert_array_equal(boxes, np.array(expected).reshape(-1, 4))
        assert labels.tolist() == [category_index[a["category_id"]] for a in mine]
    portrait = [h > w for h, w in (sizes[i] for i in kept_ids)]
    assert data.aspect_groups() == [TALL if p else WIDE for p in portrait]
    assert data.aspect_groups() == [0, 1, 0, 0, 0, 1, 1, 1]

    # By default the two images without an annotation are kept, as background-only images.
    kept = training(coco)
    assert kept.image_ids == [i["id"] for i in raw["images"]] and len(kept) == 10
    assert kept.background_indices() == [kept.image_ids.index(58636), kept.image_ids.index(226111)]
    assert (kept.counts.images_kept, kept.counts.background_kept) == (10, 2)
    assert kept.counts.images_dropped == 0 and kept.counts.boxes_kept == 88
    assert kept.summary().startswith("training images: 10 kept (2 of them background-only), 0 ")
    for index in kept.background_indices():
        boxes, labels = kept.boxes(index)
        assert boxes.shape == (0, 4) and labels.shape == (0,)
        assert kept.image_labels()[index] == []


def synthetic() -> dict:
    """Image 1 is 000000000139.jpg (640 x 426) with every kind of box; images 2-4 lose all of
    theirs; image 5 is the same file without a size in its entry."""
    boxes = [
        (1, [10, 20, 30, 40], 1, 0),  # kept as is
        (1, [-5, 400, 20, 50], 2, 0),  # clipped to (0, 400, 15, 426)
        (1, [630, -10, 20, 30], 1, 0),  # clipped to (630, 0, 640, 20)
        (1, [100, 100, -5, 10], 1, 0),  # negative width: degenerate
        (1, [100, 100, 0, 10], 1, 0),  # zero width: degenerate
        (1, [700, 10, 10, 10], 2, 0),  # right of the image: zero width once clipped
        (1, [50, 50, 10, 10], 3, 0),  # category 3 is not a class
        (1, [50, 50, 10, 10], 1, 1),  # crowd
        (1, [0, 0, 640, 426], 2, 0),  # the whole image: not clipped
        (2, [5, 5, 10, 10], 1, 1),  # crowd only
        (3, [5, 5, 10, 10], 3, 0),  # no class only
        (4, [-3, 5, 2, 10], 1, 0),  # x2 = -1: degenerate once clipped
        (5, [600, 400, 100, 100], 2, 0),  # no size: clipped after decoding
        (5, [10, 10, 0, 5], 1, 0),  # degenerate even without a size
        (5, [700, 0, 10, 10], 1, 0),  # no size: kept now, dropped after decoding
    ]
    name = "000000000139.jpg"
    sized = {"file_name": name, "height": 426, "width": 640}
    return {
        "images": [
            {"id": 1, **sized},
            {"id": 2, **sized},
            {"id": 3, **sized},
            {"id": 4, "file_name": name, "height": 100, "width": 100},
            {"id": 5, "file_name": name},
        ],
        "annotations": [
            {"id": i, "image_id": image, "bbox": box, "category_id": category, "iscrowd": crowd}
            for i, (image, box, category, crowd) in enumerate(boxes, 1)
        ],
        "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}, {"id": 3, "name": "3"}],
    }


# Class 0 is category 2 and class 1 category 1: labels follow the table, not the ids.
TABLE = ClassTable(category_ids=(2, 1), names=("two", "one"))


def synthetic_training(data: dict | None = None, **kwargs) -> TrainingDataset:
    coco = CocoDataset.load(data or synthetic(), IMAGES, strict_boxes=False)
    options = {"short_sides": (426,), "max_side": 2000, "flip_prob": 0.0, **kwargs}
    return TrainingDataset(coco, TABLE, TV, **options)


def test_negative_sizes_need_strict_boxes_off():
    with pytest.raises(DatasetError, match=r"annotation 4 has a negative bbox width or height"):
        CocoDataset.load(synthetic(), IMAGES)


def test_synthetic_boxes_are_clipped_dropped_and_counted():
    # Image 2 (crowd only) is dropped: a crowd region is not background. Images 3 and 4 are
    # left without a box: background-only by default, dropped with drop_empty.
    data = synthetic_training()
    assert data.image_ids == [1, 3, 4, 5] and data.background_indices() == [1, 2]
    counts = data.counts
    assert (counts.images_kept, counts.background_kept, counts.images_dropped) == (4, 2, 0)
    assert counts.crowd_images_dropped == 1
    assert (counts.crowd_dropped, counts.outside_classes_dropped) == (2, 2)
    assert (counts.degenerate_dropped, counts.boxes_clipped, counts.boxes_kept) == (5, 2, 6)
    boxes, labels = data.boxes(0)
    expected = [[10, 20, 40, 60], [0, 400, 15, 426], [630, 0, 640, 20], [0, 0, 640, 426]]
    np.testing.assert_array_equal(boxes, expected)
    assert labels.tolist() == [1, 0, 1, 0]
    assert data.boxes(1)[0].shape == (0, 4)
    boxes, labels = data.boxes(3)  # not clipped before decoding
    np.testing.assert_array_equal(boxes, [[600, 400, 700, 500], [700, 0, 710, 10]])
    assert data.aspect_groups() == [WIDE, WIDE, WIDE, UNSIZED]
    assert data.image_labels() == [[0, 1], [], [], [0, 1]]

    dropping = synthetic_training(drop_empty=True)
    assert dropping.image_ids == [1, 5] and dropping.background_indices() == []
    counts = dropping.counts
    assert (counts.images_kept, counts.images_dropped, counts.crowd_images_dropped) == (2, 2, 1)
    assert dropping.aspect_groups() == [WIDE, UNSIZED]

    # use_crowd: crowd boxes are boxes like the others (Pascal VOC's "difficult" ones).
    crowd = synthetic_training(use_crowd=True)
    assert crowd.image_ids == [1, 2, 3, 4, 5] and crowd.background_indices() == [2, 3]
    counts = crowd.counts
    assert (counts.crowd_dropped, counts.crowd_images_dropped, counts.boxes_kept) == (0, 0, 8)
    np.testing.assert_array_equal(crowd.boxes(1)[0], [[5, 5, 15, 15]])
    assert [50, 50, 60, 60] in crowd.boxes(0)[0].tolist()


def test_background_sample_has_no_box():
    data = synthetic_training(flip_prob=1.0)
    sample = data[(1, 0)]  # image 3: its only box is of a category outside the table
    assert sample.image_id == 3 and sample.flipped
    assert sample.targets.boxes.shape == (0, 4) and sample.targets.labels.shape == (0,)
    assert sample.targets.boxes.dtype == torch.float32


def test_image_without_size_is_clipped_after_decoding():
    data = synthetic_training()
    sample = data[(3, 0)]  # short side 426 on a 426 x 640 image: the resize is the identity
    assert sample.image.shape == (3, 426, 640) and sample.original_size == (426, 640)
    np.testing.assert_array_equal(sample.targets.boxes.numpy(), [[600, 400, 640, 426]])
    assert sample.targets.labels.tolist() == [0]


def test_decoded_size_other_than_the_file_says_is_an_image_error():
    data = synthetic()
    data["images"][0]["width"] = 600
    with pytest.raises(ImageError) as error:
        synthetic_training(data)[(0, 0)]
    assert str(error.value) == (
        f"{IMAGES / '000000000139.jpg'}: decoded as 426x640 (h x w), "
        f"the annotation file says 426x600"
    )


def test_no_usable_box_is_a_one_line_dataset_error(tmp_path):
    data = synthetic()
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in (2, 3, 4)]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    expected = (
        "no image with a usable box after dropping 1 crowd, 1 outside-the-class-table and "
        "1 degenerate annotations (of 5 images)"
    )
    with pytest.raises(DatasetError) as error:
        TrainingDataset(CocoDataset.load(path, IMAGES), TABLE, TV, (800,), 1333)
    assert str(error.value) == f"{path}: {expected}"
    with pytest.raises(DatasetError) as error:
        synthetic_training(data)
    assert str(error.value) == f"annotations dict: {expected}"


def test_bad_arguments_and_keys(coco):
    with pytest.raises(DatasetError, match="annotations dict: loaded without an image folder"):
        TrainingDataset(CocoDataset.load(synthetic(), strict_boxes=False), TABLE, TV, (8,), 9)
    for kwargs, problem in [
        ({"short_sides": ()}, "short_sides is empty"),
        ({"short_sides": (800, 0)}, "short_sides must be positive integers, not 0"),
        ({"max_side": 0}, "max_side must be a positive integer, not 0"),
        ({"flip_prob": 1.5}, r"flip_prob must be a number in \[0, 1\], not 1.5"),
    ]:
        with pytest.raises(ValueError, match=problem):
            training(coco, **kwargs)
    data = training(coco)
    with pytest.raises(TypeError, match=r"keyed by \(index, seed\) pairs .* not 3"):
        data[3]
    with pytest.raises(IndexError, match="index 10 is out of range for 10 training images"):
        data[(10, 0)]


# --- samples -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", CONFIGS)
def test_sample_is_scaled_and_flipped_as_by_hand(coco, raw, backend):
    cfg = CONFIGS[backend]
    plain = training(coco, cfg, short_sides=(600,), flip_prob=0.0)[(0, 11)]
    flipped = training(coco, cfg, short_sides=(600,), flip_prob=1.0)[(0, 11)]
    assert plain.image_id == flipped.image_id == 139 and plain.original_size == (426, 640)
    assert not plain.flipped and flipped.flipped and plain.short_side == 600
    # 426 x 640 to a short side of 600: 640 * 600 / 426 = 901.41, 901 by every rounding rule.
    assert plain.image.shape == flipped.image.shape == (3, 600, 901)
    assert plain.image.dtype == torch.float32
    inference = preprocess_image(
        read_image(IMAGES / "000000000139.jpg"), replace(cfg, short_side=600)
    )
    assert torch.equal(plain.image, inference)
    assert torch.equal(flipped.image, torch.flip(plain.image, [-1]))

    mine = [a for a in raw["annotations"] if a["image_id"] == 139 and not a["iscrowd"]]
    sx, sy = 901 / 640, 600 / 426
    expected = np.array([[x * sx, y * sy, (x + w) * sx, (y + h) * sy] for x, y, w, h in
                         (a["bbox"] for a in mine)])  # fmt: skip
    np.testing.assert_allclose(plain.targets.boxes.numpy(), expected, rtol=1e-6)
    mirrored = np.stack(
        [901 - expected[:, 2], expected[:, 1], 901 - expected[:, 0], expected[:, 3]], 1
    )
    np.testing.assert_allclose(flipped.targets.boxes.numpy(), mirrored, rtol=1e-6, atol=1e-4)
    assert plain.targets.boxes.dtype == torch.float32
    assert plain.targets.labels.dtype == torch.int64
    assert torch.equal(plain.targets.labels, flipped.targets.labels)
    assert plain.targets.labels.tolist() == [coco.classes.index_of(a["category_id"]) for a in mine]


def test_short_sides_cover_the_set_and_respect_max_side(coco):
    sides = (300, 400, 500, 600, 700, 800)
    data = training(coco, short_sides=sides, max_side=1000)
    draws = [data.draw_augmentation(seed) for seed in range(600)]
    by_side = Counter(side for side, _ in draws)
    assert set(by_side) == set(sides)
    assert all(60 <= n <= 140 for n in by_side.values())  # 100 expected of each
    assert 240 <= sum(flip for _, flip in draws) <= 360  # 300 expected
    assert [data.draw_augmentation(seed) for seed in range(600)] == draws  # a function of seed
    # 426 x 640 at 800 would be 1201 wide: capped to 1000, 426 * 1000 / 640 = 665.6 high.
    # At 300: 640 * 300 / 426 = 450.7 wide.
    seed_800 = next(seed for seed, (side, _) in enumerate(draws) if side == 800)
    seed_300 = next(seed for seed, (side, _) in enumerate(draws) if side == 300)
    for seed, size in ((seed_800, (665, 1000)), (seed_300, (300, 450))):
        sample = data[(0, seed)]
        assert sample.short_side == draws[seed][0] and sample.flipped == draws[seed][1]
        assert tuple(sample.image.shape[1:]) == size
        boxes = sample.targets.boxes
        assert (boxes >= 0).all() and (boxes[:, 0::2] <= size[1]).all()
        assert (boxes[:, 1::2] <= size[0]).all()
    for index in range(len(data)):  # tall images too
        sample = data[(index, index)]
        height, width = sample.original_size
        expected = resized_size(
            height, width, replace(TV, short_side=sample.short_side, max_side=1000)
        )
        assert tuple(sample.image.shape[1:]) == expected and max(expected) <= 1000


def batches(data: TrainingDataset, workers: int, count: int) -> list[TrainingBatch]:
    sampler = GroupedBatchSampler(data.aspect_groups(), batch_size=2, seed=3)
    loader = DataLoader(
        data, batch_sampler=sampler, num_workers=workers, collate_fn=collate_training
    )
    return list(islice(loader, count))


@pytest.mark.parametrize("backend", ["cv2", "torch"])
def test_same_key_same_sample_with_and_without_workers(coco, backend):
    data = training(coco, CONFIGS[backend])
    in_process, in_workers = batches(data, 0, 3), batches(data, 2, 3)
    # The torch resize may differ in the last bits with the thread count (2 here, 1 in workers).
    atol = 0.0 if backend == "cv2" else 1e-5
    for j, (a, b) in enumerate(zip(in_process, in_workers, strict=True)):
        assert a.iteration == b.iteration == j
        assert a.image_ids == b.image_ids and a.image_sizes == b.image_sizes
        torch.testing.assert_close(a.images, b.images, rtol=0.0, atol=atol)
        for ta, tb in zip(a.targets, b.targets, strict=True):
            assert torch.equal(ta.boxes, tb.boxes) and torch.equal(ta.labels, tb.labels)
    assert len({size for b in in_process for size in b.image_sizes}) > 1  # augmentation varied


# --- collate -------------------------------------------------------------------------------


def test_collate_pads_to_multiples_of_32_with_the_pad_value(coco):
    data = training(coco, MGE, short_sides=(600,), max_side=1333)
    samples = [data[SampleKey(0, 1, 7)], data[SampleKey(1, 2, 7)]]
    # 139: 426 x 640 -> 600 x 901; 802: 640 x 424 -> 906 x 600 (640 * 600 / 424 = 905.66).
    assert [tuple(s.image.shape[1:]) for s in samples] == [(600, 901), (906, 600)]
    batch = collate_training(samples)
    assert batch.images.shape == (2, 3, 928, 928) and batch.iteration == 7 and len(batch) == 2
    assert batch.image_sizes == [(600, 901), (906, 600)]
    assert batch.image_ids == [139, 802] and batch.original_sizes == [(426, 640), (640, 424)]
    assert all(t is s.targets for t, s in zip(batch.targets, samples, strict=True))
    # MegEngine pads raw pixels with 0 before normalizing: -mean / std once normalized.
    fill = torch.tensor([-m / s for m, s in zip(MGE.mean, MGE.std, strict=True)])
    torch.testing.assert_close(pad_value(MGE), fill)
    for i, sample in enumerate(samples):
        h, w = sample.image.shape[1:]
        assert torch.equal(batch.images[i, :, :h, :w], sample.image)
        padding = torch.ones(928, 928, dtype=torch.bool)
        padding[:h, :w] = False
        assert torch.equal(batch.images[i][:, padding], fill[:, None].expand(3, int(padding.sum())))


def test_collate_rejects_mixed_or_empty_input(coco):
    a = training(coco, MGE)[(0, 1)]
    b = training(coco, TV)[(0, 1)]
    with pytest.raises(ValueError, match="no samples"):
        collate_training([])
    with pytest.raises(ValueError, match="different input configs"):
        collate_training([a, b])
    with pytest.raises(ValueError, match="several iterations"):
        collate_training([a, replace(a, iteration=4)])


# --- sampler -------------------------------------------------------------------------------

GROUPS = [0] * 20 + [1] * 15 + [5] * 10
GROUPS = [GROUPS[i] for i in np.random.default_rng(0).permutation(len(GROUPS))]


def test_batches_are_single_group_and_ranks_split_them():
    world, size = 3, 2
    ranks = [GroupedBatchSampler(GROUPS, size, seed=9, rank=r, world_size=world) for r in range(3)]
    schedule = list(islice(ranks[0].global_batches(), 40))
    per_rank = [list(islice(iter(s), 40)) for s in ranks]
    seeds = set()
    for j, batch in enumerate(schedule):
        assert batch.iteration == j and len(batch.indices) == world * size
        assert {GROUPS[i] for i in batch.indices} == {batch.group}
        assert len(set(batch.indices)) == world * size  # ranks disjoint
        union = []
        for r in range(world):
            keys = per_rank[r][j]
            assert [k.iteration for k in keys] == [j, j]
            assert [k.seed for k in keys] == [sample_seed(9, j, r * size + p) for p in range(size)]
            union += [k.dataset_index for k in keys]
            seeds.update(k.seed for k in keys)
        assert tuple(union) == batch.indices
    assert len(seeds) == 40 * world * size


@pytest.mark.parametrize(("groups", "batch_size"), [(GROUPS, 3), ([0] * 7 + [1] * 9, 6)])
def test_each_image_once_per_epoch_but_the_carry_over(groups, batch_size):
    sampler = GroupedBatchSampler(groups, batch_size, seed=1)
    last_epoch = 5
    seen: Counter[int] = Counter()
    for batch in sampler.global_batches():
        if batch.epoch > last_epoch:
            break
        assert len(set(batch.indices)) == batch_size
        seen.update(batch.indices)
    waiting = Counter()
    for i in range(len(groups)):
        assert seen[i] in (last_epoch, last_epoch + 1)
        waiting[groups[i]] += seen[i] == last_epoch
    # Every occurrence so far is batched or waits in its bucket, and buckets empty by batches.
    for group, n in Counter(groups).items():
        assert waiting[group] == (last_epoch + 1) * n % batch_size


def naive_has_duplicates(groups: list[int], batch_size: int, seed: int, epochs: int) -> bool:
    """Whether carrying buckets over epochs without deferring repeated images would put an
    image twice into one batch."""
    buckets: dict[int, list[int]] = {}
    for epoch in range(epochs):
        for index in epoch_order(len(groups), seed, epoch):
            bucket = buckets.setdefault(groups[index], [])
            if index in bucket:
                return True
            bucket.append(index)
            if len(bucket) == batch_size:
                bucket.clear()
    return False


def test_the_carry_over_case_is_exercised():
    assert naive_has_duplicates([0] * 7 + [1] * 9, 6, seed=1, epochs=6)


def test_resume_equals_the_tail_of_an_uninterrupted_run():
    for rank in (0, 1):
        whole = list(islice(GroupedBatchSampler(GROUPS, 2, 5, rank, 2), 60))
        resumed = list(islice(GroupedBatchSampler(GROUPS, 2, 5, rank, 2, start_iteration=23), 37))
        assert resumed == whole[23:] and resumed[0][0].iteration == 23


def test_same_seed_same_sequence_other_seed_another():
    def first(seed: int) -> list[list[SampleKey]]:
        return list(islice(GroupedBatchSampler(GROUPS, 2, seed), 30))

    assert first(7) == first(7)
    assert first(7) != first(8)
    assert epoch_order(45, 7, 0) != epoch_order(45, 7, 1)
    assert sorted(epoch_order(45, 7, 3)) == list(range(45))


def test_groups_smaller_than_a_global_batch_join_the_largest():
    groups = [0] * 3 + [1] * 10 + [2] * 2
    sampler = GroupedBatchSampler(groups, 2, seed=0, world_size=2)
    assert sampler.merged_groups == (0, 2)
    assert sampler.groups == (1,) * 15
    used = {i for b in islice(sampler.global_batches(), 8) for i in b.indices}
    assert used == set(range(15))
    tiny = GroupedBatchSampler([0, 1, 2, 0, 1], 4, seed=0)  # all small: into the largest, 0
    assert tiny.merged_groups == (1, 2) and tiny.groups == (0,) * 5


def test_bad_sampler_arguments():
    for kwargs, problem in [
        ({"batch_size": 0}, "batch_size must be at least 1, not 0"),
        ({"seed": -1}, "seed must be at least 0, not -1"),
        ({"rank": 2, "world_size": 2}, r"rank must be below world_size \(2\), not 2"),
        ({"start_iteration": -3}, "start_iteration must be at least 0, not -3"),
        ({"batch_size": 4, "world_size": 3}, r"3 images are fewer than one global batch of 12"),
        ({"groups": [0, True, 1]}, r"groups\[1\] must be an integer group id, not True"),
    ]:
        options = {"groups": [0, 1, 0], "batch_size": 1, "seed": 0, **kwargs}
        with pytest.raises(ValueError, match=problem):
            GroupedBatchSampler(**options)
