"""Serving benchmark: ``fasterrcnn serve`` under N concurrent clients on 127.0.0.1, against one
sequential client and against the engine's own batched loop.

Run from the repository root::

    .venv/bin/python benchmarks/serve.py                  # 8 clients, 2 rounds of 3 x 15 s
    .venv/bin/python benchmarks/serve.py --clients 8 --seconds 30 --rounds 1 --json serve.json

Three phases of ``--seconds`` each, in ``--rounds`` rounds (a change in the machine's load
hits every phase), on the same real images (the mini COCO set's first ``--num-images``, else
the tests' images), cycled:

* **engine**: :func:`fasterrcnn.inference.loop.run_inference` over the image files in this
  process, batches of ``--max-batch`` (what ``fasterrcnn detect --batch-size`` runs), in runs
  of ``2 * --max-batch`` images until the time is up;
* **sequential**: one client posting the images one after the other to the server;
* **concurrent**: ``--clients`` clients posting at once, each on its own keep-alive connection.

The server is the real command (``fasterrcnn serve``, a subprocess, idle while the engine
runs) with the name-seeded weights of ``tests/helpers/seeded.py``. Clients stop sending at the deadline; the phase ends when the
last answer arrives, and images/s is answered images over that time. Each phase's requests
are counted as sent, answered (200), refused (503), failed (another status) and lost (no
answer); latency p50/p99 is over the answered ones. The server's peak memory is its kernel
high-water mark (VmHWM) at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
MINI = (REPO / ".." / "shared" / "data" / "coco-val-mini" / "val2017").resolve()
SLICE = REPO / "tests" / "fixtures" / "coco" / "val2017"
MODEL = "torchvision_fasterrcnn_resnet50_fpn"
SHAPES = REPO / "tests" / "fixtures" / "torchvision" / "torchvision_state_dict_shapes.json"

sys.path.insert(0, str(REPO))  # run from a checkout without installing
sys.path.insert(0, str(REPO / "tests"))  # the name-seeded weights

import fasterrcnn  # noqa: E402
from fasterrcnn.inference.loop import run_inference  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=MINI if MINI.is_dir() else SLICE)
    p.add_argument("--num-images", type=int, default=16, help="distinct images, cycled (16)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    p.add_argument("--seconds", type=float, default=15.0, help="sending time per phase (15)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the three phases (2)")
    p.add_argument("--max-batch", type=int, default=4, help="server and engine batch (4)")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="the server's (10)")
    p.add_argument("--threads", type=int, default=2, help="torch threads, both sides (2)")
    p.add_argument("--json", type=Path, help="write the figures here too")
    return p.parse_args()


@dataclass
class Phase:
    """One phase's counts and times."""

    name: str
    sent: int = 0
    answered: int = 0
    refused: int = 0
    failed: int = 0
    lost: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def add(self, other: Phase) -> None:
        for name in ("sent", "answered", "refused", "failed", "lost", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies += other.latencies

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "latencies"}
        out.update(images_per_s=self.images_per_s, p50_s=self.percentile(0.5),
                   p99_s=self.percentile(0.99))  # fmt: skip
        return out


def engine_phase(
    model: fasterrcnn.Detector, paths: list[Path], batch: int, seconds: float
) -> Phase:
    """Runs of ``2 * batch`` images (the files, cycled) until ``seconds`` have passed."""
    phase = Phase("engine")
    chunk = 2 * batch
    start = time.perf_counter()
    while phase.sent == 0 or time.perf_counter() - start < seconds:
        sources = [paths[(phase.sent + i) % len(paths)] for i in range(chunk)]
        for result in run_inference(model, sources, batch_size=batch):
            phase.sent += 1
            phase.answered += result.detections is not None
            phase.failed += result.detections is None
    phase.seconds = time.perf_counter() - start
    return phase


def client_phase(name: str, port: int, images: list[bytes], clients: int, seconds: float) -> Phase:
    phase = Phase(name)
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds
    last_answer = [start]

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        n = offset
        while n == offset or time.perf_counter() < deadline:  # at least one request each
            data = images[n % len(images)]
            n += clients
            sent_at = time.perf_counter()
            try:
                conn.request("POST", "/v1/detect", data, {"Content-Type": "image/jpeg"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            done = time.perf_counter()
            with lock:
                phase.sent += 1
                if status == 200:
                    phase.answered += 1
                    phase.latencies.append(done - sent_at)
                    last_answer[0] = max(last_answer[0], done)
                elif status == 503:
                    phase.refused += 1
                elif status:
                    phase.failed += 1
                else:
                    phase.lost += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = last_answer[0] - start
    return phase


def start_server(weights: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fasterrcnn", "serve", "--port", "0", "--model", MODEL,
         "--weights", str(weights), "--max-batch", str(args.max_batch),
         "--max-wait-ms", str(args.max_wait_ms), "--max-queue", str(4 * args.clients)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
    if match is None:
        proc.kill()
        sys.exit("benchmarks/serve.py: the server did not start")
    return proc, int(match.group(1))


def peak_memory_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def report(phases: list[Phase], peak: float, args: argparse.Namespace) -> dict[str, Any]:
    engine, sequential, concurrent = phases
    print(f"{'phase':<24}{'images':>7}{'s':>8}{'images/s':>10}{'p50 s':>8}{'p99 s':>8}"
          f"{'sent':>6}{'answered':>9}{'refused':>8}{'failed':>7}{'lost':>5}")  # fmt: skip
    labels = [f"engine (batch {args.max_batch})", "1 sequential client",
              f"{args.clients} concurrent clients"]  # fmt: skip
    for label, p in zip(labels, phases, strict=True):
        p50 = "-" if p is engine else f"{p.percentile(0.5):.2f}"
        p99 = "-" if p is engine else f"{p.percentile(0.99):.2f}"
        print(f"{label:<24}{p.answered:>7}{p.seconds:>8.1f}{p.images_per_s:>10.3f}{p50:>8}"
              f"{p99:>8}{p.sent:>6}{p.answered:>9}{p.refused:>8}{p.failed:>7}{p.lost:>5}")  # fmt: skip
    to_engine = concurrent.images_per_s / engine.images_per_s
    to_sequential = concurrent.images_per_s / sequential.images_per_s
    print(
        f"{args.clients} clients / engine: {to_engine:.3f}   "
        f"{args.clients} clients / sequential: {to_sequential:.3f}   "
        f"sequential / engine: {sequential.images_per_s / engine.images_per_s:.3f}"
    )
    nothing_lost = all(p.lost == 0 and p.failed == 0 for p in phases[1:])
    print(
        f"server peak memory (VmHWM): {peak:.0f} MiB; "
        f"nothing lost: {'yes' if nothing_lost else 'NO'}; "
        f"within 10% of the engine: {'yes' if to_engine >= 0.9 else 'NO'}"
    )
    return {"phases": [p.summary() for p in phases], "peak_server_mib": peak,
            "clients_to_engine": to_engine, "clients_to_sequential": to_sequential}  # fmt: skip


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from helpers.seeded import load_shapes, torch_seeded

    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    paths = paths[: args.num_images]
    images = [p.read_bytes() for p in paths]
    load = os.getloadavg()[0]
    print(f"{len(paths)} images from {args.images}; torch {torch.__version__}, "
          f"{args.threads} threads, {os.cpu_count()} CPUs, load average {load:.2f}")  # fmt: skip
    phases = [Phase("engine"), Phase("sequential"), Phase("concurrent")]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "seeded.pth"
        state = torch_seeded(load_shapes(SHAPES))
        torch.save(state, weights)
        model = fasterrcnn.create_model(MODEL, weights=state)
        list(run_inference(model, paths[:1]))  # warm-up
        proc, port = start_server(weights, args)
        try:
            client_phase("warm-up", port, images[:1], 1, 0.0)
            for _ in range(args.rounds):  # the phases alternate: a load change hits all
                rounds = (
                    engine_phase(model, paths, args.max_batch, args.seconds),
                    client_phase("sequential", port, images, 1, args.seconds),
                    client_phase("concurrent", port, images, args.clients, args.seconds),
                )
                for total, part in zip(phases, rounds, strict=True):
                    total.add(part)
            peak = peak_memory_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
    figures = report(phases, peak, args)
    figures["load_average"] = {"start": load, "end": os.getloadavg()[0]}
    print(f"load average: {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
