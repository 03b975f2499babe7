"""The allocator's memory policy: freed feature maps kept for the next image (fast) or
returned at once (low), and free heap pages returned past the budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NAMES = ("000000000139", "000000010764", "000000087038", "000000184324")


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
