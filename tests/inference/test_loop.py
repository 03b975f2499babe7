"""The inference loop: size-grouped batches that really share a forward pass, input order,
bounded memory, DataLoader workers, sharding across ranks and bad files among good ones.

Inputs are thin strips of real COCO images (about 100 x 640): the network scales them to
208 x 1333 (224 x 1344 padded), which keeps this file fast on a CPU.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import IMAGES

import fasterrcnn
from fasterrcnn.data.transforms import padded_size
from fasterrcnn.inference.loop import run_inference

NAMES = ("000000000139", "000000010764", "000000087038", "000000184324")


def _same(a: fasterrcnn.Detections, b: fasterrcnn.Detections) -> None:
    """Bit-for-bit the same detections."""
    assert a.image_size == b.image_size
    assert np.array_equal(a.boxes, b.boxes)
    assert np.array_equal(a.scores, b.scores)
    assert np.array_equal(a.category_ids, b.category_ids)
    assert a.class_names == b.class_names


@pytest.fixture(scope="module")
def strips() -> list[np.ndarray]:
    """Four 100 x 640 RGB strips of different real images: one padded size (224 x 1344)."""
    return [fasterrcnn.read_image(IMAGES / f"{n}.jpg")[150:250].copy() for n in NAMES]


@pytest.fixture(scope="module")
def odd_strip() -> np.ndarray:
    """An 80 x 424 strip: another padded size (256 x 1344)."""
    return fasterrcnn.read_image(IMAGES / "000000000802.jpg")[300:380].copy()


@pytest.fixture(scope="module")
def singles(tv_model, strips) -> list[fasterrcnn.Detections]:
    """Each strip run alone (batch of one)."""
    return [tv_model.predict(s) for s in strips]


@pytest.fixture
def batch_sizes(tv_model):
    """The batch size of every forward pass of ``tv_model`` while the test runs."""
    seen: list[int] = []
    handle = tv_model.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[0]))
    yield seen
    handle.remove()


# --------------------------------------------------------------------------- batching


def test_images_of_one_size_share_a_batch(tv_model, strips, singles, batch_sizes):
    sizes = {padded_size(*s.shape[:2], tv_model.config.input) for s in strips}
    assert sizes == {(224, 1344)}
    results = tv_model.predict(strips[:3], batch_size=3)
    assert batch_sizes == [3]  # one forward pass for the three images
    for result, single in zip(results, singles[:3], strict=True):
        _same(result, single)


def test_mixed_sizes_are_batched_apart_in_input_order(
    tv_model, strips, odd_strip, singles, batch_sizes
):
    sources = [strips[0], odd_strip, strips[1], strips[2], strips[3]]
    results = list(fasterrcnn.iter_detections(tv_model, sources, batch_size=2))
    assert sorted(batch_sizes) == [1, 2, 2]
    assert [r.image_size for r in results] == [(100, 640), (80, 424)] + [(100, 640)] * 3
    for result, single in zip([results[0], *results[2:]], singles, strict=True):  # input order kept
        _same(result, single)
    _same(results[1], tv_model.predict(odd_strip))


# --------------------------------------------------------------------------- streaming


class CountingSources:
    """A sequence of image arrays that records how many were read."""

    def __init__(self, images: list[np.ndarray], repeat: int) -> None:
        self.images = images
        self.repeat = repeat
        self.reads = 0

    def __len__(self) -> int:
        return len(self.images) * self.repeat

    def __getitem__(self, i: int) -> np.ndarray:
        self.reads += 1
        return self.images[i % len(self.images)]


def test_sources_are_read_as_they_are_needed(tv_model, strips, singles):
    sources = CountingSources(strips, repeat=3)
    seen = 0
    for k, result in enumerate(fasterrcnn.iter_detections(tv_model, sources, batch_size=2)):
        # batch of 2 + at most 2 * batch_size waiting + the one being read
        assert sources.reads <= k + 1 + 5
        _same(result, singles[k % 4])
        seen += 1
    assert seen == 12 and sources.reads == 12


def test_generator_of_paths(tv_model, strips, singles, tmp_path):
    paths = []
    for i, strip in enumerate(strips):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), strip[:, :, ::-1])
    results = list(fasterrcnn.iter_detections(tv_model, (p for p in paths), batch_size=4))
    assert [r.source for r in results] == [str(p) for p in paths]
    for result, single in zip(results, singles, strict=True):
        _same(result, single)


def test_workers_decode_in_other_processes(tv_model, strips, singles, tmp_path):
    paths = []
    for i, strip in enumerate(strips):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), strip[:, :, ::-1])
    results = list(fasterrcnn.iter_detections(tv_model, paths, batch_size=2, workers=2))
    assert [r.source for r in results] == [str(p) for p in paths]
    for result, single in zip(results, singles, strict=True):
        _same(result, single)


def test_bad_files_are_reported_and_skipped(tv_model, strips, singles, tmp_path):
    good = []
    for i, strip in enumerate(strips[:2]):
        good.append(tmp_path / f"good{i}.png")
        cv2.imwrite(str(good[-1]), strip[:, :, ::-1])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.jpg"
    errors: list[str] = []
    results = list(
        fasterrcnn.iter_detections(
            tv_model,
            [empty, good[0], missing, good[1]],
            batch_size=2,
            workers=1,
            on_error=lambda err: errors.append(str(err)),
        )
    )
    assert [r.source for r in results] == [str(good[0]), str(good[1])]
    _same(results[0], singles[0])
    _same(results[1], singles[1])
    assert len(errors) == 2
    assert "empty.jpg" in errors[0] and "empty file" in errors[0]
    assert "missing.jpg" in errors[1] and "no such file" in errors[1]


def test_bad_file_is_logged_by_default(tv_model, strips, tmp_path, caplog):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    results = list(fasterrcnn.iter_detections(tv_model, [empty, strips[0]]))
    assert len(results) == 1
    assert any("empty.jpg" in r.getMessage() for r in caplog.records)


def test_single_image_is_not_a_collection(tv_model, strips):
    with pytest.raises(TypeError, match="single image"):
        list(fasterrcnn.iter_detections(tv_model, strips[0]))
    with pytest.raises(TypeError, match="single image"):
        list(fasterrcnn.iter_detections(tv_model, "photo.jpg"))


# --------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_cover_every_image_once(tv_model, strips, odd_strip, singles, world_size):
    sources = [*strips, odd_strip]
    seen: dict[int, fasterrcnn.Detections] = {}
    for rank in range(world_size):
        for result in run_inference(
            tv_model, sources, batch_size=2, rank=rank, world_size=world_size
        ):
            assert result.index % world_size == rank
            assert result.index not in seen
            assert result.detections is not None
            seen[result.index] = result.detections
    assert sorted(seen) == list(range(len(sources)))
    for i, single in enumerate(singles):
        _same(seen[i], single)


def test_keep_images(tv_model, strips):
    results = list(run_inference(tv_model, strips[:2], keep_images=True))
    for result, strip in zip(results, strips[:2], strict=True):
        assert result.image is not None and np.array_equal(result.image, strip)


def test_model_is_a_pure_tensor_module(tv_model, strips, singles):
    """The network alone: padded batch + sizes in, detection tensors out."""
    batch = tv_model.preprocess(strips[:2])
    detections = fasterrcnn.FasterRCNN.detect(
        tv_model, batch.tensor, batch.image_sizes, batch.original_sizes
    )
    assert isinstance(tv_model, torch.nn.Module)
    for dets, single in zip(detections, singles[:2], strict=True):
        assert torch.is_tensor(dets.boxes) and torch.is_tensor(dets.labels)
        np.testing.assert_array_equal(dets.boxes.numpy(), single.boxes)
        np.testing.assert_array_equal(dets.scores.numpy(), single.scores)
