"""The streaming engine: size-grouped batches that really share a forward pass, input order,
bounded memory, DataLoader workers, sharding across ranks and bad files among good ones.

Inputs are thin strips of real COCO images (about 100 x 640): the network scales them to
208 x 1333 (224 x 1344 padded), which keeps this file fast on a CPU.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import IMAGES

import fasterrcnn
from fasterrcnn.data.transforms import padded_size
from fasterrcnn.inference.loop import run_inference
from fasterrcnn.inference.size_groups import group_by_key

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


# --------------------------------------------------------------------------- grouping


def test_group_by_key_hand_example():
    key = {"a": "A", "b": "B", "c": "C", "x": None}
    items = ["a1", "b1", "a2", "x", "a3", "b2", "c1", "b3"]
    groups = list(group_by_key(items, lambda s: key[s[0]], batch_size=2, max_pending=3))
    # Full pairs go at once, "x" (no key) alone at once; the rest at the end, oldest first.
    assert groups == [["a1", "a2"], ["x"], ["b1", "b2"], ["a3"], ["c1"], ["b3"]]
    # Past max_pending waiting items, the group holding the oldest one goes out unfilled.
    groups = list(group_by_key(["a1", "b1", "c1", "a2"], lambda s: key[s[0]], 2, max_pending=2))
    assert groups == [["a1"], ["b1"], ["c1"], ["a2"]]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5])
@pytest.mark.parametrize("max_pending", [None, 1, 4])
def test_group_by_key_properties(batch_size, max_pending):
    rng = np.random.default_rng(batch_size * 10 + (max_pending or 0))
    keys = [None if k == 4 else int(k) for k in rng.integers(0, 5, 200)]
    limit = 2 * batch_size if max_pending is None else max_pending
    pulled = 0

    def items():
        nonlocal pulled
        for i, k in enumerate(keys):
            pulled += 1
            yield (i, k)

    out: list[int] = []
    waiting_max = 0
    for group in group_by_key(items(), lambda item: item[1], batch_size, max_pending):
        assert 1 <= len(group) <= batch_size
        assert len({k for _, k in group}) == 1
        if group[0][1] is None:
            assert len(group) == 1
        waiting_max = max(waiting_max, pulled - len(out) - len(group))
        out += [i for i, _ in group]
    assert sorted(out) == list(range(len(keys)))  # each item exactly once
    assert waiting_max <= limit  # never more than max_pending held back
    for k in set(keys):  # the items of one key keep their order
        mine = [i for i in out if keys[i] == k]
        assert mine == sorted(mine)


def test_group_by_key_fills_full_batches_when_it_can():
    keys = ["A", "B"] * 6
    groups = list(group_by_key(range(12), lambda i: keys[i], batch_size=3))
    assert [len(g) for g in groups] == [3, 3, 3, 3]


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


def test_modeling_does_not_import_the_engine():
    modeling = Path(fasterrcnn.__file__).parent / "modeling"
    forbidden = re.compile(r"^\s*(from|import) fasterrcnn\.(engine|zoo|data\.images)", re.M)
    paths = list(modeling.glob("*.py"))
    assert len(paths) > 5
    for path in paths:
        assert not forbidden.search(path.read_text()), path.name


def _resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_freed_heap_memory_goes_back_to_the_os():
    from fasterrcnn.inference.memory import release_free_memory

    # 64 KiB blocks live in the heap (below glibc's mmap threshold); freeing all but the
    # last leaves ~256 MB of free pages the allocator keeps resident.
    blocks = [bytearray(64 * 1024) for _ in range(4096)]
    keep = blocks[-1]
    before = _resident_mb()
    del blocks
    kept = _resident_mb()
    if not release_free_memory(keep=0):
        pytest.skip("not glibc: no malloc_trim")
    after = _resident_mb()
    assert kept > before - 64  # freeing alone returned (almost) nothing
    assert after < kept - 200  # the trim returned the free pages
    assert len(keep) == 64 * 1024


_HEAP_PROBE = """
import resource, sys
from fasterrcnn.inference.memory import prepare_allocator, release_free_memory
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
assert prepare_allocator() == sys.argv[1] and prepare_allocator() == sys.argv[1]
base = rss_mb()
block = bytearray(64 << 20)  # malloc, then every page written
del block
kept = rss_mb() - base
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = bytearray(64 << 20)  # the same size again
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
del block
small_budget = release_free_memory(keep=1 << 30)  # 64 MiB free: kept under "fast"
returned = release_free_memory(keep=0)
print(kept, faults, small_budget, returned, rss_mb() - base)
"""


def _heap_probe(policy: str) -> tuple[float, int, bool, bool, float]:
    env = {**os.environ, "FASTERRCNN_MEMORY": policy}
    run = subprocess.run(
        [sys.executable, "-c", _HEAP_PROBE, policy],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    kept, faults, small_budget, returned, after = run.stdout.split()
    return float(kept), int(faults), small_budget == "True", returned == "True", float(after)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_fast_policy_reuses_freed_blocks_without_page_faults() -> None:
    """A freed 64 MiB block stays in the heap and its successor takes it without faulting
    its 16,384 pages in again; it goes back to the OS only past the budget (or when asked)."""
    kept, faults, small_budget, returned, after = _heap_probe("fast")
    assert kept > 60  # resident after the free
    assert faults < 1000
    assert not small_budget  # 64 MiB free is under the 1 GiB kept
    assert returned and after < 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_low_policy_returns_large_blocks_when_freed() -> None:
    kept, faults, _, _, after = _heap_probe("low")
    assert kept < 2  # returned by the free itself
    assert faults > 16000  # the price: every page faulted in again
    assert after < 2


def test_unknown_memory_policy_is_a_one_line_cli_error(capsys, monkeypatch) -> None:
    from fasterrcnn.cli import main

    monkeypatch.setenv("FASTERRCNN_MEMORY", "huge")
    assert main(["models"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "fasterrcnn: error: FASTERRCNN_MEMORY must be 'fast' or 'low', not 'huge'"
