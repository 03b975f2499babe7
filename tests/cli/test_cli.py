"""The command line: ``fasterrcnn detect`` outputs, input expansion, and one-line errors with
the documented exit statuses (1: some images failed or no weights; 2: bad model/checkpoint).

Runs that only need *some* image use thin strips of the test images (about 100 x 640): the
network scales them to 208 x 1333 instead of 800 x 1200, which keeps this file fast on a CPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers.cli_runner import assert_one_line_error, stderr_lines
from helpers.seeded import DATA

import fasterrcnn
from fasterrcnn.cli import main

IMAGES = DATA / "coco" / "val2017"
TORCHVISION = "torchvision_fasterrcnn_resnet50_fpn"
SUMMARY = re.compile(r"^(\d+) image\(s\), (\d+) detection\(s\) written to ")


def run_cli(*args: object, cwd: Path, env: dict[str, str] | None = None):
    """``python -m fasterrcnn.cli ARGS`` with no usable network and an empty weight cache."""
    full_env = {
        **os.environ,
        "FASTERRCNN_HOME": str(cwd / "cache"),
        "https_proxy": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "no_proxy": "",
        "NO_PROXY": "",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "fasterrcnn.cli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def strips(tmp_path_factory) -> dict[str, Path]:
    """Thin JPEG strips of the three test images (cheap inputs)."""
    folder = tmp_path_factory.mktemp("strips")
    crops = {
        "000000000139.jpg": (slice(150, 250), "a"),
        "000000010764.jpg": (slice(100, 200), "b"),
        "000000000802.jpg": (slice(300, 380), "c"),
    }
    out = {}
    for name, (rows, stem) in crops.items():
        image = cv2.imread(str(IMAGES / name))[rows]
        path = folder / f"strip_{stem}.jpg"
        assert cv2.imwrite(str(path), image)
        out[stem] = path
    return out


# --------------------------------------------------------------------------- detect


def test_detect_directory(tmp_path, tv_weights_path):
    src = tmp_path / "in"
    src.mkdir()
    originals = [
        IMAGES / f"{name}.jpg" for name in ("000000000139", "000000000802", "000000010764")
    ]
    for path in originals:
        shutil.copy(path, src / path.name)
    (src / "notes.txt").write_text("not an image, not picked up\n")
    out = tmp_path / "out"
    threshold = 0.15
    proc = run_cli(
        "detect",
        src,
        "--model",
        TORCHVISION,
        "--weights",
        tv_weights_path,
        "--out",
        out,
        "--score-threshold",
        threshold,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr

    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{p.stem}.jpg" for p in originals] + [f"{p.stem}.json" for p in originals]
    )
    total = 0
    for path in originals:
        original = cv2.imread(str(path))
        drawn = cv2.imread(str(out / f"{path.stem}.jpg"))
        assert drawn is not None and drawn.shape == original.shape

        data = json.loads((out / f"{path.stem}.json").read_text())
        assert data["image"] == str(src / path.name)
        assert (data["height"], data["width"]) == original.shape[:2]
        dets = data["detections"]
        assert len(dets) > 0
        total += len(dets)
        h, w = original.shape[:2]
        for det in dets:
            assert set(det) == {"box", "score", "category_id", "class_name"}
            assert det["score"] >= threshold
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
            assert isinstance(det["category_id"], int) and 1 <= det["category_id"] <= 90
            assert isinstance(det["class_name"], str) and det["class_name"]
        scores = [det["score"] for det in dets]
        assert scores == sorted(scores, reverse=True)

        # Boxes are drawn: compare with the original put through the same JPEG encoder.
        _, encoded = cv2.imencode(".jpg", original)
        reencoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        diff = np.abs(drawn.astype(np.int16) - reencoded.astype(np.int16)).max(axis=2)
        assert (diff > 60).sum() > 100, f"{path.name}: nothing drawn"

    # The threshold removed something (the model keeps up to 100 per image).
    assert total < 300
    last = proc.stdout.strip().splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, last
    assert int(match.group(1)) == 3 and int(match.group(2)) == total


def test_detect_glob(tmp_path, tv_weights_path, strips, capsys):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(strips["a"], src / "one.jpg")
    shutil.copy(strips["b"], src / "two.jpg")
    shutil.copy(strips["a"], src / "three.png.bak")
    out = tmp_path / "out"
    status = main(
        [
            "detect",
            str(src / "*.jpg"),
            "--model",
            TORCHVISION,
            "--weights",
            str(tv_weights_path),
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["one.jpg", "one.json", "two.jpg", "two.json"]
    assert SUMMARY.match(captured.out.strip().splitlines()[-1]).group(1) == "2"


def test_detect_explicit_file(tmp_path, tv_weights_path, strips, capsys):
    out = tmp_path / "out"
    status = main(
        [
            "detect",
            str(strips["c"]),
            "--model",
            TORCHVISION,
            "--weights",
            str(tv_weights_path),
            "--out",
            str(out),
            "--score-threshold",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["strip_c.jpg", "strip_c.json"]
    data = json.loads((out / "strip_c.json").read_text())
    assert (data["height"], data["width"]) == (80, 424)
    assert len(data["detections"]) > 0
    assert cv2.imread(str(out / "strip_c.jpg")).shape == (80, 424, 3)


def test_detect_with_bad_files(tmp_path, tv_weights_path, strips):
    src = tmp_path / "in"
    src.mkdir()
    good = src / "good.jpg"
    shutil.copy(strips["a"], good)
    empty = src / "empty.jpg"
    empty.write_bytes(b"")
    text = src / "text.jpg"
    text.write_text("hello, I am not a JPEG\n")
    truncated = src / "truncated.jpg"
    data = strips["b"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    missing = src / "missing.jpg"
    out = tmp_path / "out"

    proc = run_cli(
        "detect",
        empty,
        good,
        text,
        truncated,
        missing,
        "--model",
        TORCHVISION,
        "--weights",
        tv_weights_path,
        "--out",
        out,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good.jpg", "good.json"]
    lines = stderr_lines(proc.stderr)
    for bad, reason in [
        (empty, "empty"),
        (text, "not a readable image"),
        (truncated, "truncated"),
        (missing, "no such file"),
    ]:
        naming = [line for line in lines if bad.name in line]
        assert len(naming) == 1, (bad.name, proc.stderr)
        assert reason in naming[0]
    assert not [line for line in lines if "good.jpg" in line]
    last = proc.stdout.strip().splitlines()[-1]
    assert SUMMARY.match(last).group(1) == "1"
    assert "4 failed" in last


@pytest.fixture(scope="module")
def png_variants(tmp_path_factory, strips) -> Path:
    """Grayscale, BGRA and 16-bit PNG versions of one strip."""
    folder = tmp_path_factory.mktemp("pngs")
    bgr = cv2.imread(str(strips["a"]))
    alpha = np.full(bgr.shape[:2], 255, np.uint8)
    alpha[:, ::3] = 0
    assert cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    assert cv2.imwrite(str(folder / "rgba.png"), np.dstack([bgr, alpha]))
    assert cv2.imwrite(str(folder / "deep.png"), bgr.astype(np.uint16) * 257)
    return folder


def test_detect_png_variants(tmp_path, tv_weights_path, png_variants, capsys):
    out = tmp_path / "out"
    status = main(
        [
            "detect",
            str(png_variants),
            "--model",
            TORCHVISION,
            "--weights",
            str(tv_weights_path),
            "--out",
            str(out),
            "--score-threshold",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    for stem in ("gray", "rgba", "deep"):
        assert cv2.imread(str(out / f"{stem}.jpg")).shape == (100, 640, 3)
        assert len(json.loads((out / f"{stem}.json").read_text())["detections"]) > 0
    # The 16-bit image scaled to 8 bits and the RGBA one without alpha are the same pixels.
    deep = json.loads((out / "deep.json").read_text())["detections"]
    rgba = json.loads((out / "rgba.json").read_text())["detections"]
    gray = json.loads((out / "gray.json").read_text())["detections"]
    assert deep == rgba
    assert gray != rgba
    assert SUMMARY.match(captured.out.strip().splitlines()[-1]).group(1) == "3"


# --------------------------------------------------------------------------- fatal errors


def test_unknown_model(tmp_path, strips):
    proc = run_cli(
        "detect", strips["a"], "--model", "nope", "--out", tmp_path / "out", cwd=tmp_path
    )
    assert proc.returncode == 2
    line = assert_one_line_error(proc, "nope", *fasterrcnn.list_models())
    assert line.startswith("fasterrcnn: error:")
    assert not (tmp_path / "out").exists()


def _bad_weights(kind: str, folder: Path, tv_state_dict) -> Path:
    if kind == "missing-file":
        return folder / "absent.pth"
    path = folder / f"{kind}.pth"
    if kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "wrong-keys":
        torch.save({"encoder.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(3)}, path)
    elif kind == "missing-key":
        state = dict(tv_state_dict)
        del state["roi_heads.box_predictor.cls_score.weight"]
        torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("random-bytes", "not a checkpoint"),
        ("wrong-keys", "encoder.weight"),
        ("missing-key", "missing"),
        ("missing-file", "no such file"),
    ],
)
def test_bad_weights(kind, reason, tmp_path, strips, tv_state_dict):
    weights = _bad_weights(kind, tmp_path, tv_state_dict)
    proc = run_cli(
        "detect",
        strips["a"],
        "--model",
        TORCHVISION,
        "--weights",
        weights,
        "--out",
        tmp_path / "out",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert_one_line_error(proc, str(weights), reason)


def test_no_weights_and_no_network(tmp_path, strips):
    cache = tmp_path / "cache"
    cache.mkdir()
    proc = run_cli(
        "detect",
        strips["a"],
        "--out",
        tmp_path / "out",
        cwd=tmp_path,
        env={"FASTERRCNN_HOME": str(cache)},
    )
    assert proc.returncode == 1
    info = fasterrcnn.get_preset(fasterrcnn.zoo.presets.DEFAULT_MODEL).weights
    assert_one_line_error(
        proc,
        "--weights",
        f"could not download {info.url}",
        f"put the file at {cache / info.file_name}",
    )
    # No partial download left behind: only the folder of lock files.
    assert [p.name for p in cache.iterdir()] == [".locks"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_cuda_unavailable(tmp_path, strips, tv_weights_path):
    proc = run_cli(
        "detect",
        strips["a"],
        "--model",
        TORCHVISION,
        "--weights",
        tv_weights_path,
        "--device",
        "cuda",
        "--out",
        tmp_path / "out",
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert_one_line_error(proc, "cuda", "CUDA")


def test_models_lists_presets(capsys):
    assert main(["models"]) == 0
    header, *rows, cache = capsys.readouterr().out.strip().splitlines()
    names = fasterrcnn.list_models()
    assert TORCHVISION in names
    assert header.split() == ["model", "source", "mAP", "file", "size", "cached"]
    assert [row.split()[0] for row in rows] == names  # one row per preset
    seed = next(row for row in rows if row.startswith("faster_rcnn_res50_coco_1x_800size "))
    assert seed.split()[1:] == [
        "(default)", "MegEngine", "38.8", "faster_rcnn_res50_coco_1x_800size_38dot8_5e195d80.pkl",
        "~159", "MiB", "no",
    ]  # fmt: skip
    assert cache.startswith("cache: ")


def test_models_subprocess(tmp_path):
    proc = run_cli("models", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "torchvision_fasterrcnn_resnet50_fpn" in proc.stdout


def test_unknown_memory_policy_is_a_one_line_cli_error(capsys, monkeypatch) -> None:
    from fasterrcnn.cli import main

    monkeypatch.setenv("FASTERRCNN_MEMORY", "huge")
    assert main(["models"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "fasterrcnn: error: FASTERRCNN_MEMORY must be 'fast' or 'low', not 'huge'"
