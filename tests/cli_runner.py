"""``fasterrcnn ARGS`` in a fresh process, or in N under torchrun, for the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    args: list[object], cwd: Path, processes: int = 1, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """One thread per process (``OMP_NUM_THREADS=1``, as torchrun's CPU processes have), a
    private model cache under ``cwd``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FASTERRCNN_HOME": str(cwd / "cache")}
    launcher = [sys.executable, "-m", "fasterrcnn"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={processes}", "-m", "fasterrcnn"]  # fmt: skip
    return subprocess.run(
        [*launcher, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
