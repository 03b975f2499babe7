"""``fasterrcnn data stats|show|convert``: outputs, exit statuses and one-line errors."""

from __future__ import annotations

import json
import sys

import pytest
from helpers.cli_runner import assert_one_line_error, run_cli
from helpers.coco_slice import ANN_FILE, IMAGES
from PIL import Image

from fasterrcnn.cli import main
from fasterrcnn.data.coco import CocoDataset

SLICE = ["--annotations", ANN_FILE, "--images", IMAGES]


def _main(*args: object) -> int:
    return main([str(a) for a in args])


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fasterrcnn: error:"), lines
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_stats_prints_and_writes(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    plot, data = tmp_path / "stats.png", tmp_path / "stats.json"
    assert _main("data", "stats", *SLICE, "--plot", plot, "--json", data) == 0
    out = capsys.readouterr().out
    assert "images       10: 8 with boxes, 2 without" in out
    assert "boxes        88, and 2 ignored regions" in out
    assert json.loads(data.read_text())["boxes"] == 88
    with Image.open(plot) as image:
        assert image.format == "PNG"


def test_stats_plot_without_matplotlib(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert _main("data", "stats", *SLICE, "--plot", tmp_path / "s.png") == 2
    _one_line_error(capsys, "pip install matplotlib")


def test_show_draws_the_slice(tmp_path, capsys) -> None:
    out = tmp_path / "drawn"
    args = ("--max-images", 3, "--per-sheet", 2)
    assert _main("data", "show", *SLICE, "--out", out, *args) == 0
    assert "3 image(s) drawn, 2 contact sheet(s)" in capsys.readouterr().out
    assert len(list(out.glob("*.jpg"))) == 3 and len(list(out.glob("sheet_*.png"))) == 2


def test_show_skips_an_unreadable_image(tmp_path, capsys) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"broken")
    Image.new("RGB", (40, 30)).save(tmp_path / "good.png")
    data = {
        "images": [{"id": 1, "file_name": "bad.jpg"}, {"id": 2, "file_name": "good.png"}],
        "annotations": [{"image_id": 2, "category_id": 1, "bbox": [1, 1, 10, 10]}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    args = ("--annotations", tmp_path / "ann.json", "--images", tmp_path, "--out", tmp_path / "o")
    assert _main("data", "show", *args) == 1
    captured = capsys.readouterr()
    assert "1 image(s) drawn, 1 skipped" in captured.out
    err = [line for line in captured.err.splitlines() if line]
    assert len(err) == 1 and "bad.jpg" in err[0] and "Traceback" not in captured.err
    assert (tmp_path / "o" / "good.jpg").is_file()


def test_convert_to_coco(tmp_path, capsys) -> None:
    target = tmp_path / "copy.json"
    assert _main("data", "convert", *SLICE, "--to", "coco", target) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"converted {ANN_FILE} (coco, 10 images) to coco at {target}")
    copy = CocoDataset.load(target, IMAGES)
    assert len(copy) == 10 and sum(len(copy.annotations(i.id)) for i in copy.images) == 90


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("data", "stats", "--annotations", "nope.json", "--images", "."), "nope.json"),
        (("data", "show", "--annotations", "nope.json", "--out", "o"), "nope.json"),
        (("data", "stats", *SLICE, "--json", "no/such/dir/s.json"), "--json"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, capsys, monkeypatch, args, needle) -> None:
    monkeypatch.chdir(tmp_path)
    assert _main(*args) == 2
    _one_line_error(capsys, needle)


def test_unreadable_dataset_in_a_fresh_process(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = run_cli(["data", "stats", "--annotations", bad, "--images", tmp_path], cwd=tmp_path)
    assert proc.returncode == 2
    assert_one_line_error(proc, str(bad))
    missing = run_cli(["data", "convert", "--annotations", "nope.json", "--images", ".",
                       "--to", "yolo", "out"], cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 2
    assert_one_line_error(missing, "nope.json")
