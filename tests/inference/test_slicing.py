"""Sliced inference: tile geometry, the mapping of tile boxes back to the image, cut boxes
giving way to whole ones, NMS and NMM merging, batching of tiles, and real model runs.

Most tests run a scripted stand-in for the model (input ``k`` of a run gets fixed boxes in
the tile's own pixels), so that every merged box can be checked by hand. The real runs use
the small R18 of ``pet_model`` (short side 320).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import IMAGES
from helpers.models import custom_config

import fasterrcnn
from fasterrcnn.inference import slicing, tile_merge
from fasterrcnn.inference.predict import predict
from fasterrcnn.inference.slicing import SliceOptions, sliced_inference, tile_windows
from fasterrcnn.inference.tile_merge import cut_mask, merge_boxes
from fasterrcnn.modeling.postprocess import BatchDetections

CAT, DOG = 0, 1  # class indices of custom_config's table: category ids 1 and 2


class ScriptedDetector:
    """A :class:`~fasterrcnn.inference.protocol.BatchDetector` stand-in: input ``k`` of the
    run (in the order the loop feeds them) gets ``script[k]``, rows ``(x1, y1, x2, y2, score,
    class index)`` in that input's own pixels. ``batches`` records each call's original
    (h, w) sizes."""

    def __init__(self, script: dict[int, list[tuple[float, ...]]] | None = None) -> None:
        self.config = custom_config()
        self.device = torch.device("cpu")
        self.returns_proposals = False
        self.script = script or {}
        self.batches: list[list[tuple[int, int]]] = []

    def detect_batch(self, images, image_sizes, original_sizes, *, proposals=False):
        first = sum(len(b) for b in self.batches)
        self.batches.append([(int(h), int(w)) for h, w in original_sizes.tolist()])
        rows = [(*r, b) for b in range(len(images)) for r in self.script.get(first + b, [])]
        t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 7)
        return BatchDetections(t[:, :4], t[:, 4], t[:, 5].long(), t[:, 6].long()), None


def _run(script, options, **kwargs) -> fasterrcnn.Detections:
    """A black 500 x 900 image through the scripted model, one input per batch."""
    image = np.zeros((500, 900, 3), np.uint8)
    (result,) = sliced_inference(ScriptedDetector(script), [image], options, **kwargs)
    assert result.error is None and result.detections is not None
    return result.detections


def _rows(dets: fasterrcnn.Detections) -> list[tuple]:
    """(box, score, category id) of each detection, rounded for comparison by hand."""
    return [
        (tuple(round(float(v), 3) for v in box), round(float(s), 3), int(c))
        for box, s, c in zip(dets.boxes, dets.scores, dets.category_ids, strict=True)
    ]


# --------------------------------------------------------------------------- tile geometry


def test_tile_windows_by_hand():
    # 600 x 1000, tile 512, overlap round(102.4) = 102: stride 410; x starts 0, 410 and the
    # last one moved back to 1000 - 512 = 488; y starts 0 and 600 - 512 = 88.
    windows = tile_windows(600, 1000, 512, 0.2)
    xs, ys = [(0, 512), (410, 922), (488, 1000)], [(0, 512), (88, 600)]
    assert windows.tolist() == [[x1, y1, x2, y2] for y1, y2 in ys for x1, x2 in xs]
    assert windows.dtype == np.int64 and windows.shape == (6, 4)
    # A side no longer than the tile is one window of the whole side.
    assert tile_windows(300, 1000, 512, 0.2).tolist() == [[x1, 0, x2, 300] for x1, x2 in xs]
    assert tile_windows(512, 200, 512, 0.5).tolist() == [[0, 0, 200, 512]]
    # No overlap: an exact fit has no extra window, one more pixel needs a moved-back one.
    assert tile_windows(100, 1024, 512, 0.0)[:, 0].tolist() == [0, 512]
    assert tile_windows(100, 1025, 512, 0.0)[:, 0].tolist() == [0, 512, 513]


def test_tile_windows_properties_on_random_sizes():
    rng = np.random.default_rng(0)
    for _ in range(150):
        height, width, size = (int(v) for v in rng.integers((1, 1, 64), (1500, 1500, 700)))
        overlap = float(rng.uniform(0, 0.9))
        stride = size - round(size * overlap)
        windows = tile_windows(height, width, size, overlap)
        x1, y1, x2, y2 = windows.T
        assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= width).all() and (y2 <= height).all()
        assert ((x2 - x1) == min(size, width)).all() and ((y2 - y1) == min(size, height)).all()
        assert len({tuple(w) for w in windows.tolist()}) == len(windows)
        covered = np.zeros((height, width), np.int32)
        for a, b, c, d in windows.tolist():
            covered[b:d, a:c] += 1
        assert (covered > 0).all()
        for starts in (np.unique(x1), np.unique(y1)):  # row-major; steps of at most stride
            assert starts[0] == 0 and (np.diff(starts) <= stride).all()
        assert np.array_equal(np.lexsort((x1, y1)), np.arange(len(windows)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (SliceOptions(size=32), "slice size must be at least 64 pixels, not 32"),
        (SliceOptions(size=512, overlap=0.9), r"slice overlap must be in \[0, 0.9\), not 0.9"),
        (SliceOptions(size=512, overlap=-0.1), r"slice overlap must be in \[0, 0.9\), not -0.1"),
        (SliceOptions(size=512, merge_iou=0.0), r"slice merge IoU must be in \(0, 1\], not 0.0"),
        (SliceOptions(size=512, merge="wbf"), "slice merge must be 'nms' or 'nmm', not 'wbf'"),  # type: ignore[arg-type]
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        options.check()
    with pytest.raises(ValueError, match=f"^{message}$"):  # checked before any image is read
        next(sliced_inference(ScriptedDetector(), [np.zeros((8, 8, 3), np.uint8)], options))


def test_cut_mask_only_at_inner_edges():
    # The right tile of a 500 x 900 image: its left edge (x = 400) is inner, the others are
    # image borders.
    # 2 px from the inner left edge: cut; 3 px: whole; touching the image's top, right and
    # bottom borders: whole.
    boxes = np.array([[2, 50, 90, 90], [3, 50, 90, 90], [100, 0, 499.0, 500]], np.float32)
    assert cut_mask(boxes, (400, 0, 900, 500), (500, 900)).tolist() == [True, False, False]
    # The left tile: only its right edge (x = 500) is inner.
    boxes = np.array([[0, 0, 50, 500], [400, 10, 498, 20], [400, 10, 497, 20]], np.float32)
    assert cut_mask(boxes, (0, 0, 500, 500), (500, 900)).tolist() == [False, True, False]


# --------------------------------------------------------------------------- mapping and merging

# A 500 x 900 image in tiles of 500 with overlap 0.2: windows x 0..500 and 400..900.
TWO_TILES = SliceOptions(size=500, overlap=0.2, whole_image=False)
LEFT, RIGHT, WHOLE = 0, 1, 2  # inputs of a run: the two tiles, then the whole image


@pytest.mark.parametrize("merge", ["nms", "nmm"])
def test_whole_box_wins_over_its_cut_part(merge):
    script = {
        # image box 450..560: cut by the left tile's inner edge at x = 500 (higher score) ...
        LEFT: [(450, 100, 500, 200, 0.9, CAT)],
        # ... and whole in the right tile; a dog only there, at image x 500..600.
        RIGHT: [(50, 100, 160, 200, 0.6, CAT), (100, 300, 200, 350, 0.7, DOG)],
    }
    dets = _run(script, SliceOptions(500, 0.2, whole_image=False, merge=merge))
    # The cut box's IoU with the whole one is 5000 / 11000 < 0.5: plain NMS would keep both.
    cat_score = 0.6 if merge == "nms" else 0.9  # NMM: the enclosing box, the highest score
    expected = [((450, 100, 560, 200), cat_score, 1), ((500, 300, 600, 350), 0.7, 2)]
    assert _rows(dets) == sorted(expected, key=lambda r: -r[1])
    assert dets.class_names == (["cat", "dog"] if merge == "nmm" else ["dog", "cat"])
    assert dets.image_size == (500, 900) and dets.source is None


def test_two_cut_halves_nms_keeps_the_better_nmm_encloses_both():
    script = {
        LEFT: [(350, 100, 500, 200, 0.7, CAT)],  # image 350..500, cut at x = 500
        RIGHT: [(0, 100, 250, 200, 0.8, CAT)],  # image 400..650, cut at x = 400
    }
    assert _rows(_run(script, TWO_TILES)) == [((400, 100, 650, 200), 0.8, 1)]
    nmm = SliceOptions(500, 0.2, whole_image=False, merge="nmm")
    assert _rows(_run(script, nmm)) == [((350, 100, 650, 200), 0.8, 1)]


@pytest.mark.parametrize("merge", ["nms", "nmm"])
def test_different_classes_never_merge(merge):
    script = {
        LEFT: [(450, 100, 500, 200, 0.9, DOG)],
        RIGHT: [(50, 100, 160, 200, 0.6, CAT), (0, 100, 250, 200, 0.5, DOG)],
    }
    dets = _run(script, SliceOptions(500, 0.2, whole_image=False, merge=merge))
    cat = ((450, 100, 560, 200), 0.6, 1)  # inside both dogs, and left alone by them
    if merge == "nms":  # the second dog is cut and only 20% inside the first: kept
        assert _rows(dets) == [((450, 100, 500, 200), 0.9, 2), cat, ((400, 100, 650, 200), 0.5, 2)]
    else:  # the first dog lies inside the second (IoS 1): one enclosing dog
        assert _rows(dets) == [((400, 100, 650, 200), 0.9, 2), cat]


def test_the_whole_image_pass_is_never_cut():
    script = {
        LEFT: [(350, 100, 500, 200, 0.7, CAT)],
        RIGHT: [(0, 100, 250, 200, 0.8, CAT)],
        WHOLE: [(350, 100, 650, 200, 0.5, CAT)],  # already in image pixels
    }
    assert _rows(_run(script, SliceOptions(500, 0.2))) == [((350, 100, 650, 200), 0.5, 1)]


def test_score_threshold_applies_before_merging():
    script = {LEFT: [(450, 100, 500, 200, 0.9, CAT)], RIGHT: [(50, 100, 160, 200, 0.4, CAT)]}
    # The whole box (0.4) is dropped first, so it does not remove the cut one.
    dets = _run(script, TWO_TILES, score_threshold=0.5)
    assert _rows(dets) == [((450, 100, 500, 200), 0.9, 1)]


def _merge_by_definition(boxes, scores, classes, cut, method, threshold):
    """``merge_boxes`` as its docstring says, every pair compared: (kept index, box, score)."""
    order = sorted(range(len(scores)), key=lambda i: (bool(cut[i]), -scores[i]))
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    nmm, claimed, out = method == "nmm", set(), []
    for k, i in enumerate(order):
        if i in claimed:
            continue
        group = [i]
        for j in order[k + 1 :]:
            w, h = np.minimum(boxes[i, 2:], boxes[j, 2:]) - np.maximum(boxes[i, :2], boxes[j, :2])
            inter = max(w, 0) * max(h, 0)
            if nmm:
                hit = inter / min(area[i], area[j]) >= threshold
            else:  # IoU, or the covered fraction of a cut box
                hit = inter / (area[j] if cut[j] else area[i] + area[j] - inter) > threshold
            if j not in claimed and classes[j] == classes[i] and inter > 0 and hit:
                claimed.add(j)
                group.append(j)
        box = [*boxes[group, :2].min(0), *boxes[group, 2:].max(0)] if nmm else list(boxes[i])
        out.append((i, box, max(scores[group]) if nmm else scores[i]))
    return sorted(out, key=lambda r: -r[2])  # stable: ties stay in priority order


@pytest.mark.parametrize("method", ["nms", "nmm"])
def test_merge_matches_its_definition_on_random_boxes(monkeypatch, method):
    monkeypatch.setattr(tile_merge, "PAIR_BLOCK", 7)  # many blocks of candidate pairs
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(0, 60))
        xy, wh = rng.integers(0, 300, (n, 2)), rng.integers(1, 120, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float64)
        scores, cut = rng.integers(1, 20, n) / 20, rng.random(n) < 0.3
        classes, threshold = rng.integers(1, 3, n), float(rng.choice([0.2, 0.5, 0.8]))
        keep, merged, merged_scores = merge_boxes(boxes, scores, classes, cut, method, threshold)
        expected = _merge_by_definition(boxes, scores, classes, cut, method, threshold)
        assert keep.tolist() == [r[0] for r in expected]
        assert np.allclose(merged.reshape(-1, 4), np.reshape([r[1] for r in expected], (-1, 4)))
        assert np.allclose(merged_scores, [r[2] for r in expected])


# --------------------------------------------------------------------------- batching, sources


@pytest.mark.parametrize("whole_image", [True, False])
def test_tiles_share_batches_and_are_views(monkeypatch, whole_image):
    image = np.zeros((1000, 1400, 3), np.uint8)  # 3 rows x 4 columns of 512 tiles
    fed: list[np.ndarray] = []
    real = slicing.run_inference

    def spy(model, sources, **kwargs):
        assert not isinstance(sources, (list, tuple))  # a lazy stream, not a list of crops

        def recorded():
            for source in sources:
                fed.append(source)
                yield source

        return real(model, recorded(), **kwargs)

    monkeypatch.setattr(slicing, "run_inference", spy)
    model, options = ScriptedDetector(), SliceOptions(size=512, whole_image=whole_image)
    (result,) = sliced_inference(model, [image], options, batch_size=4)
    assert result.detections is not None and result.detections.image_size == (1000, 1400)
    tiles = [[(512, 512)] * 4] * 3
    assert model.batches == ([*tiles, [(1000, 1400)]] if whole_image else tiles)
    assert len(fed) == 12 + whole_image
    assert all(np.shares_memory(x, image) for x in fed)


def test_unreadable_images_and_shards(tmp_path):
    missing = tmp_path / "missing.png"
    sources = [missing, np.zeros((600, 700, 3), np.uint8), np.zeros((10, 10), np.uint8)]
    model, options = ScriptedDetector(), SliceOptions(512)
    results = list(sliced_inference(model, sources, options))
    assert [r.index for r in results] == [0, 1, 2]
    assert results[0].source == str(missing) and "no such file" in str(results[0].error)
    assert results[1].error is None and results[1].detections is not None
    assert results[2].detections is None and "HxWx3" in str(results[2].error)
    shard = sliced_inference(model, sources, options, rank=1, world_size=2)
    assert [r.index for r in shard] == [1]


# --------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def coco_rgb() -> np.ndarray:
    return fasterrcnn.read_image(IMAGES / "000000000139.jpg")  # 426 x 640


def _counted(monkeypatch, model) -> list[int]:
    """The batch size of every ``detect_batch`` call of ``model`` while the test runs."""
    sizes: list[int] = []
    real = model.detect_batch

    def counting(images, *args, **kwargs):
        sizes.append(images.shape[0])
        return real(images, *args, **kwargs)

    monkeypatch.setattr(model, "detect_batch", counting)
    return sizes


def test_an_image_of_one_tile_is_the_plain_result(pet_model, coco_rgb, tmp_path, monkeypatch):
    one_tile, smaller = coco_rgb[100:228, 200:328].copy(), coco_rgb[:80, :120].copy()
    path = tmp_path / "one_tile.png"
    cv2.imwrite(str(path), one_tile[:, :, ::-1])
    plain = predict(pet_model, [path, smaller])
    calls = _counted(monkeypatch, pet_model)
    sliced = list(sliced_inference(pet_model, [path, smaller], SliceOptions(size=128)))
    assert calls == [1, 1]  # each run once, as it is: no tiles, no second pass
    assert sliced[0].source == str(path) and sliced[0].detections.source == str(path)
    for result, expected in zip(sliced, plain, strict=True):
        dets = result.detections
        assert len(dets) > 0 and dets.image_size == expected.image_size
        assert np.array_equal(dets.boxes, expected.boxes)
        assert np.array_equal(dets.scores, expected.scores)
        assert np.array_equal(dets.category_ids, expected.category_ids)


def test_real_model_on_a_large_image(pet_model, coco_rgb, tmp_path, monkeypatch):
    large = np.tile(coco_rgb, (3, 3, 1))[:1000, :1400]
    path = tmp_path / "large.png"
    cv2.imwrite(str(path), large[:, :, ::-1])
    calls = _counted(monkeypatch, pet_model)
    options = SliceOptions(size=640, overlap=0.2)  # x starts 0, 512, 760; y 0, 360: 6 tiles
    (result,) = sliced_inference(pet_model, [path], options, batch_size=3, keep_images=True)
    assert calls == [3, 3, 1]  # the tiles in two batches, then the whole image
    dets = result.detections
    assert result.error is None and dets.image_size == (1000, 1400)
    assert dets.source == str(path) and np.array_equal(result.image, large)
    assert len(dets) > 0 and (np.diff(dets.scores) <= 0).all()
    boxes = dets.boxes
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
    assert (boxes[:, 2] <= 1400).all() and (boxes[:, 3] <= 1000).all()
    assert boxes[:, 2].max() > 900 and boxes[:, 3].max() > 600  # far tiles mapped back
    pairs = set(zip(dets.category_ids.tolist(), dets.class_names, strict=True))
    assert pairs <= {(1, "cat"), (2, "dog"), (3, "bird")}
