"""Many processes: ``torchrun --nproc-per-node 2`` (gloo on CPU) shards the images; rank 0
gathers. The results JSON, the metrics and the files ``detect`` writes are those of one process.

torch runs other kernels on one thread than on several, so the one-process runs here use one
thread, as each of torchrun's CPU processes does (``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest
from conftest import TORCHVISION
from helpers.cli_runner import run_cli
from helpers.megengine_pickle import megengine_pickle_bytes
from helpers.seeded import DATA, load_shapes, numpy_seeded

import fasterrcnn

COCO = DATA / "coco"
RES18 = "faster_rcnn_res18_coco_3x_800size"
RES18_SHAPES = (
    DATA / "megengine_variants" / RES18 / "faster_rcnn_res18_coco_3x_800size_state_dict_shapes.json"
)

# Several processes started by torchrun: the slow run (CI).
pytestmark = pytest.mark.slow


def _no_traceback_of_ours(stderr: str) -> None:
    """torchrun reports a process's non-zero exit with a traceback of its own launcher
    (``ChildFailedError``); no traceback runs through this package."""
    if "Traceback" in stderr:
        assert "ChildFailedError" in stderr, stderr
    package = str(Path(fasterrcnn.__file__).parent)
    assert f'File "{package}' not in stderr, stderr


@pytest.fixture(scope="module")
def res18_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("res18") / "res18.pkl"
    path.write_bytes(megengine_pickle_bytes(numpy_seeded(load_shapes(RES18_SHAPES))))
    return path


def test_eval_two_processes_equal_one(res18_weights, tmp_path):
    outputs = {}
    for processes in (1, 2):
        results, metrics = tmp_path / f"results{processes}.json", tmp_path / f"m{processes}.json"
        proc = run_cli(
            ["eval", "--model", RES18, "--weights", res18_weights,
             "--images", COCO / "val2017", "--annotations", COCO / "instances_val2017.json",
             "--max-images", 5, "--results", results, "--metrics", metrics],
            tmp_path, processes,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        _no_traceback_of_ours(proc.stderr)
        # Rank 0 alone reports: one summary, one inference line naming the process count.
        assert proc.stdout.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all") == 1
        assert f"{processes} process(es)" in proc.stdout
        outputs[processes] = (results.read_bytes(), json.loads(metrics.read_text()))
    (results1, metrics1), (results2, metrics2) = outputs[1], outputs[2]
    rows = json.loads(results1)
    assert {r["image_id"] for r in rows} == {139, 802, 10764, 58636, 87038}
    assert results2 == results1
    assert metrics2 == metrics1


def test_detect_two_processes_equal_one(tv_weights_path, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i, name in enumerate(["000000000139", "000000010764", "000000087038"]):
        cv2.imwrite(
            str(src / f"strip{i}.jpg"), cv2.imread(str(COCO / "val2017" / f"{name}.jpg"))[150:250]
        )
    (src / "broken.jpg").write_bytes(b"not an image")
    outputs = {}
    for processes in (1, 2):
        out = tmp_path / f"out{processes}"
        proc = run_cli(
            ["detect", src, "--model", TORCHVISION, "--weights", tv_weights_path,
             "--out", out, "--score-threshold", 0.2],
            tmp_path, processes,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr  # the broken file
        _no_traceback_of_ours(proc.stderr)
        assert sum("broken.jpg" in line for line in proc.stderr.splitlines()) == 1
        summary = [line for line in proc.stdout.splitlines() if "written to" in line]
        assert len(summary) == 1 and re.match(r"^3 image\(s\), \d+ detection", summary[0])
        assert summary[0].endswith("1 failed")
        outputs[processes] = {
            p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix == ".json"
        }
    assert sorted(outputs[1]) == ["strip0.json", "strip1.json", "strip2.json"]
    assert outputs[2] == outputs[1]
