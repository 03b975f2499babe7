"""``fasterrcnn ARGS`` in a fresh process, or in N under torchrun, for the tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def run_cli(
    args: list[object],
    cwd: Path,
    processes: int = 1,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """One thread per process (``OMP_NUM_THREADS=1``, as torchrun's CPU processes have), a
    private model cache under ``cwd``; ``env`` adds or overrides variables."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "FASTERRCNN_HOME": str(cwd / "cache"),
        **(env or {}),
    }
    launcher = [sys.executable, "-m", "fasterrcnn"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={processes}", "-m", "fasterrcnn"]  # fmt: skip
    return subprocess.run(
        [*launcher, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def stderr_lines(text: str) -> list[str]:
    """Non-blank stderr lines (progress-bar redraws split on carriage returns)."""
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """``proc``'s stderr is one ``fasterrcnn: error:`` line, without a traceback, holding
    every needle; returns the line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("fasterrcnn: error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
