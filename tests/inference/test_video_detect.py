"""``fasterrcnn detect`` and ``iter_detections`` on videos and streams: a lossless video's
lines equal the same frames run as images; the drawn video's frames, rate and size; stride,
start and max-frames; the Python API against the command line; HTTP streams whole (dropped
frames accounted for) and stalled; SIGTERM ending a run with whole outputs; and bad sources
reported in one line each while the others are still processed.

The model is the fixtures' random-init ResNet-18 (``pet_file``) at ``--score-threshold 0``,
which gives 100 low-score boxes a frame: the comparisons are box for box. Besides the 320x240
lossless clip, the videos are thin (320x64) frames, which the model runs at a third of the cost.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
import torch
from helpers.cli_runner import stderr_lines
from helpers.videos import coco_frames, decode_all, pan_frames, serve_video, write_video

import fasterrcnn
from fasterrcnn.cli import main

FRAMES = coco_frames()[:6]  # 320x240 RGB
THIN = coco_frames(320, 64)  # 10 frames of 320x64: the network's input is 533x107
H264 = {"preset": "ultrafast", "g": "4"}  # a keyframe every 4 frames
NTSC = Fraction(30000, 1001)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    """One intra-op thread: the same kernels in every run, and fast on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def detect(weights: Path, *args: object) -> tuple[int, str, str]:
    """``fasterrcnn detect ARGS --weights WEIGHTS --score-threshold 0`` in this process: the
    exit status, stdout and the ``fasterrcnn:`` lines of stderr (no progress bars)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["detect", *map(str, args), "--weights", str(weights),
                       "--score-threshold", "0"])  # fmt: skip
    assert "Traceback" not in err.getvalue(), err.getvalue()
    messages = [line for line in stderr_lines(err.getvalue()) if line.startswith("fasterrcnn:")]
    return status, out.getvalue(), "\n".join(messages)


def read_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text.endswith("\n") or not text
    return [json.loads(line) for line in text.splitlines()]


def video_facts(path: Path) -> tuple[int, Fraction | None, tuple[int, int]]:
    """The frames decoded from ``path``, its stream's rate and its size."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate, size = stream.average_rate, (stream.width, stream.height)
    return len(decode_all(path)), rate, size


def assert_same(results: list[fasterrcnn.Detections], lines: list[dict[str, Any]]) -> None:
    """``results`` (the API's) are the command's ``lines``: frame, time and every detection."""
    assert [(r.frame, r.time) for r in results] == [
        (line["frame"], pytest.approx(line["time"], abs=1e-6)) for line in lines
    ]
    for result, line in zip(results, lines, strict=True):
        assert result.detection_dicts() == line["detections"]


@pytest.fixture(scope="module")
def lossless(tmp_path_factory, pet_file) -> dict[str, Any]:
    """``detect`` once over an FFV1 clip of ``FRAMES`` (10 fps) and the same frames as PNG
    files: the folders, status and output."""
    root = tmp_path_factory.mktemp("lossless")
    clip = write_video(root / "clip.mkv", FRAMES, "ffv1", "bgr0")
    pngs = root / "png"
    pngs.mkdir()
    for i, rgb in enumerate(FRAMES):
        assert cv2.imwrite(str(pngs / f"frame{i}.png"), rgb[..., ::-1])
    status, printed, errors = detect(pet_file, clip, pngs, "--out", root / "out", "--no-draw")
    return {"root": root, "clip": clip, "pngs": pngs, "out": root / "out", "status": status,
            "printed": printed, "errors": errors}  # fmt: skip


@pytest.fixture(scope="module")
def ntsc(tmp_path_factory) -> Path:
    """A lossy H.264 MP4 of 10 thin panning frames at 30000/1001 fps, its index first (as a
    stream's must be)."""
    pan = [np.ascontiguousarray(rgb[88:152]) for rgb in pan_frames(10)]
    root = tmp_path_factory.mktemp("ntsc")
    faststart = {"movflags": "+faststart"}
    return write_video(root / "pan.mp4", pan, "libx264", "yuv420p", H264, faststart, NTSC)


def test_lossless_video_lines_equal_the_frames_run_as_images(lossless) -> None:
    assert lossless["status"] == 0, lossless["errors"]
    assert lossless["errors"] == ""
    lines = read_lines(lossless["out"] / "clip.jsonl")
    assert [line["frame"] for line in lines] == list(range(6))
    assert [line["time"] for line in lines] == pytest.approx([i / 10 for i in range(6)], abs=1e-6)
    assert not any("skipped" in line for line in lines)  # a file drops no frame
    for i, line in enumerate(lines):
        image = json.loads((lossless["out"] / f"frame{i}.json").read_text())
        assert (image["height"], image["width"]) == (240, 320)
        assert line["detections"] == image["detections"], i
    counts = [len(line["detections"]) for line in lines]
    assert min(counts) > 0  # the comparison is not vacuous
    assert len({json.dumps(line["detections"]) for line in lines}) == 6  # frames differ
    summary = f"{lossless['clip']}: 6 frame(s), {sum(counts)} detection(s) written to "
    assert summary in lossless["printed"]
    assert not (lossless["out"] / "clip.mp4").exists()  # --no-draw


def test_lossy_mp4_gives_a_line_and_a_drawn_frame_per_frame(ntsc, pet_file, tmp_path) -> None:
    status, printed, errors = detect(pet_file, ntsc, "--out", tmp_path / "out")
    assert (status, errors) == (0, "")
    lines = read_lines(tmp_path / "out" / "pan.jsonl")
    assert [line["frame"] for line in lines] == list(range(10))
    assert [line["time"] for line in lines] == pytest.approx(
        [round(i / NTSC, 6) for i in range(10)], abs=1e-6
    )
    assert all(line["detections"] for line in lines)
    assert video_facts(tmp_path / "out" / "pan.mp4") == (10, NTSC, (320, 64))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pan.jsonl", "pan.mp4"]
    assert f"{tmp_path / 'out' / 'pan.jsonl'}, {tmp_path / 'out' / 'pan.mp4'}" in printed

    status, _, errors = detect(pet_file, ntsc, "--out", tmp_path / "bare", "--no-draw",
                               "--max-frames", "1")  # fmt: skip
    assert (status, errors) == (0, "")
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["pan.jsonl"]
    assert read_lines(tmp_path / "bare" / "pan.jsonl") == lines[:1]


@pytest.mark.parametrize(
    ("options", "frames", "rate"),
    [
        (["--frame-stride", "3", "--max-frames", "2"], [0, 3], NTSC / 3),
        (["--start", "0.2", "--frame-stride", "2", "--max-frames", "2"], [6, 8], NTSC / 2),
    ],
)
def test_stride_start_and_max_frames_pick_the_frames(ntsc, pet_file, tmp_path, options, frames,
                                                     rate) -> None:  # fmt: skip
    status, _, errors = detect(pet_file, ntsc, "--out", tmp_path, *options)
    assert (status, errors) == (0, "")
    lines = read_lines(tmp_path / "pan.jsonl")
    assert [line["frame"] for line in lines] == frames
    assert [line["time"] for line in lines] == pytest.approx(
        [round(i / NTSC, 6) for i in frames], abs=1e-6
    )
    assert video_facts(tmp_path / "pan.mp4") == (len(frames), rate, (320, 64))


def test_iter_detections_gives_the_command_s_lines(lossless, pet_model, tmp_path) -> None:
    lines = read_lines(lossless["out"] / "clip.jsonl")
    results = list(fasterrcnn.iter_detections(pet_model, str(lossless["clip"])))
    assert_same(results, lines)
    assert all(r.source == str(lossless["clip"]) for r in results)

    short = write_video(tmp_path / "short.mkv", FRAMES[:2], "ffv1", "bgr0")  # frames 0 and 1
    first, last = lossless["pngs"] / "frame5.png", lossless["pngs"] / "frame0.png"
    mixed = list(fasterrcnn.iter_detections(pet_model, [first, short, last]))
    assert [r.source for r in mixed] == [str(first), str(short), str(short), str(last)]
    assert_same(mixed[1:3], lines[:2])
    for result, png in [(mixed[0], first), (mixed[3], last)]:
        assert (result.frame, result.time) == (None, None)
        image = json.loads((lossless["out"] / f"{png.stem}.json").read_text())
        assert result.detection_dicts() == image["detections"]


def test_http_stream_accounts_for_every_frame(ntsc, pet_file, tmp_path) -> None:
    with serve_video(ntsc.read_bytes()) as url:
        status, printed, errors = detect(pet_file, url, "--out", tmp_path, "--no-draw")
    assert (status, errors) == (0, "")
    lines = read_lines(tmp_path / "video.jsonl")
    run = [line["frame"] for line in lines]
    skipped = [i for line in lines for i in line.get("skipped", [])]
    assert run == sorted(set(run)) and run[-1] == 9  # the newest frame is never dropped
    assert skipped  # the model is slower than the stream: frames were dropped
    assert sorted(run + skipped) == list(range(10))
    previous = -1
    for line in lines:  # a line's skipped frames came between the line before and its own
        assert all(previous < i < line["frame"] for i in line.get("skipped", [])), lines
        previous = line["frame"]
    dropped = f", {len(skipped)} dropped" if skipped else ""
    assert f"{url}: {len(run)} frame(s){dropped}, " in printed


def test_stalled_stream_is_one_line_and_the_others_still_run(ntsc, pet_file, tmp_path,
                                                            lossless) -> None:  # fmt: skip
    data, image = ntsc.read_bytes(), lossless["pngs"] / "frame0.png"
    after = write_video(tmp_path / "after.mkv", THIN[:1], "ffv1", "bgr0")
    out = tmp_path / "out"
    with serve_video(data, hang_after=len(data) // 2) as url:
        status, printed, errors = detect(pet_file, url, image, after, "--out", out,
                                         "--stream-timeout", "1")  # fmt: skip
    assert status == 1
    assert errors == f"fasterrcnn: {url}: no frame for 1 s (stream stalled)"
    lines = read_lines(out / "video.jsonl")  # the frames before the stall
    assert lines and all(line["frame"] < 9 for line in lines)
    assert video_facts(out / "video.mp4")[0] == len(lines)
    assert f"{url}: {len(lines)} frame(s)" in printed
    assert json.loads((out / "frame0.json").read_text())["detections"]
    assert [line["frame"] for line in read_lines(out / "after.jsonl")] == [0]


def test_sigterm_ends_the_run_with_whole_outputs(pet_file, tmp_path) -> None:
    clip = write_video(tmp_path / "long.mkv", THIN * 8, "ffv1", "bgr0")  # 80 frames, 8 s
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FASTERRCNN_HOME": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fasterrcnn", "detect", str(clip), "--weights", str(pet_file),
         "--out", str(out), "--score-threshold", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines_path, deadline = out / "long.jsonl", time.monotonic() + 60
    try:
        while not (lines_path.exists() and lines_path.stat().st_size):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"no line written: {proc.communicate()[1]}")
            time.sleep(0.001)
        proc.send_signal(signal.SIGTERM)  # as the first line is written: mid-frame
        printed, errors = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, errors
    assert "Traceback" not in errors
    assert [line for line in stderr_lines(errors) if line.startswith("fasterrcnn:")] == [
        "fasterrcnn: stopped"
    ]
    lines = read_lines(lines_path)
    assert 0 < len(lines) < 80
    assert [line["frame"] for line in lines] == list(range(len(lines)))
    assert video_facts(out / "long.mp4") == (len(lines), Fraction(10), (320, 64))
    assert f"{clip}: {len(lines)} frame(s), " in printed


def test_bad_sources_are_one_line_each_and_the_others_run(ntsc, pet_file, tmp_path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.mp4").write_text("not a video\n")
    (bad / "notes").write_text("not a video either\n")
    no_frames = write_video(bad / "none.mkv", [], "ffv1", "bgr0")  # fails to open
    empty = write_video(bad / "empty.avi", [], "mpeg4", "yuv420p")  # opens, then nothing comes
    with av.open(str(ntsc)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    cut = bad / "cut.mp4"  # frames 0-2 whole, the file ends inside frame 3
    cut.write_bytes(ntsc.read_bytes()[: (packets[3].pos or 0) + packets[3].size // 2])
    good = write_video(bad / "good.mkv", THIN[:2], "ffv1", "bgr0").rename(bad / "good.dat")
    image = bad / "image.png"
    assert cv2.imwrite(str(image), THIN[0][..., ::-1])
    camera = next(n for n in range(7, 100) if not Path(f"/dev/video{n}").exists())
    sources = [bad / "notes.mp4", bad / "notes", no_frames, empty, cut, image, good]
    out = tmp_path / "out"
    status, printed, errors = detect(pet_file, *sources, "--camera", camera, "--out", out)
    assert status == 1
    assert errors.splitlines() == [  # images first, then videos in order
        f"fasterrcnn: skipped: {bad / 'notes'}: not a readable image",
        f"fasterrcnn: skipped: {bad / 'notes.mp4'}: unreadable video (truncated or damaged?)",
        f"fasterrcnn: skipped: {no_frames}: has no frames",
        f"fasterrcnn: skipped: {empty}: has no frames",
        f"fasterrcnn: {cut}: corrupt at frame 3: the file ends inside a frame (truncated)",
        f"fasterrcnn: skipped: camera {camera}: no such device",
    ]
    assert [line["frame"] for line in read_lines(out / "cut.jsonl")] == [0, 1, 2]
    assert video_facts(out / "cut.mp4") == (3, NTSC, (320, 64))
    assert f"{cut}: 3 frame(s), " in printed
    assert [line["frame"] for line in read_lines(out / "good.jsonl")] == [0, 1]  # by content
    assert video_facts(out / "good.mp4")[0] == 2
    assert json.loads((out / "image.json").read_text())["detections"]
    assert (out / "image.jpg").is_file()
    written = {p.stem for p in out.iterdir()}
    assert written == {"image", "cut", "good"}  # nothing of the skipped or empty ones


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        (["--start", "-1"], "--start must be at least 0, not -1.0"),
        (["--stream-timeout", "0"], "--stream-timeout must be above 0, not 0.0"),
    ],
)
def test_bad_video_options_are_one_line_errors(lossless, pet_file, tmp_path, capsys, option,
                                               problem) -> None:  # fmt: skip
    status = main(["detect", str(lossless["clip"]), "--weights", str(pet_file), "--out",
                   str(tmp_path / "out"), *option])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip() == f"fasterrcnn: error: {problem}"
    assert not (tmp_path / "out").exists()
