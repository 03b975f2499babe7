"""``fasterrcnn download``, ``models`` and ``convert``, with weight files in their real formats.

Downloads go to a server on 127.0.0.1 through ``FASTERRCNN_MIRROR``. Conversion is checked
for every family: the converted file, loaded without naming a preset, gives exactly the
outputs of its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IMAGES
from helpers.cli_runner import assert_one_line_error, run_cli
from helpers.megengine_pickle import megengine_pickle_bytes
from helpers.models import model_zoo_pickle
from helpers.seeded import DATA, load_shapes, numpy_seeded, torch_seeded
from helpers.weights_server import WeightsServer

import fasterrcnn
from fasterrcnn.cli import main
from fasterrcnn.zoo.native import read_native
from fasterrcnn.zoo.presets import DEFAULT_MODEL

RES18 = "faster_rcnn_res18_coco_3x_800size"


def res18_file() -> bytes:
    folder = DATA / "megengine_variants" / RES18
    return megengine_pickle_bytes(
        numpy_seeded(load_shapes(folder / f"{RES18}_state_dict_shapes.json"))
    )


def test_download_then_models_then_detect_offline(tmp_path):
    """Fetch ahead of time through the mirror; the cached file then serves detect offline."""
    server = WeightsServer().start()
    info = fasterrcnn.get_preset(RES18).weights
    server.files[info.file_name] = res18_file()
    env = {"FASTERRCNN_HOME": str(tmp_path / "cache"), "FASTERRCNN_MIRROR": server.base_url}
    try:
        proc = run_cli(["download", RES18], tmp_path, env=env)
    finally:
        server.stop()
    cached = tmp_path / "cache" / info.file_name
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{RES18}: {cached}"
    assert info.file_name in proc.stderr and "100%" in proc.stderr  # the progress bar
    assert cached.read_bytes() == server.files[info.file_name]
    assert server.hits == {info.file_name: 1}

    proc = run_cli(["models"], tmp_path, env=env)
    row = next(line for line in proc.stdout.splitlines() if line.startswith(RES18 + " "))
    size = f"{cached.stat().st_size / 2**20:.0f}"
    assert row.split()[-3:] == [size, "MiB", "yes"]
    assert sum(line.endswith(" yes") for line in proc.stdout.splitlines()) == 1

    # The server is gone: detect runs from the cache (the preset's default, pretrained).
    strip = tmp_path / "strip.jpg"
    strip.write_bytes((IMAGES / "000000000139.jpg").read_bytes())
    proc = run_cli(
        ["detect", strip, "--model", RES18, "--no-draw", "--out", tmp_path / "out"],
        tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "strip.json").is_file()


def test_download_bad_requests(tmp_path):
    env = {"FASTERRCNN_HOME": str(tmp_path / "cache"), "FASTERRCNN_MIRROR": "http://127.0.0.1:9"}
    proc = run_cli(["download", "no_such_model"], tmp_path, env=env)
    assert proc.returncode == 2
    assert_one_line_error(proc, "unknown model 'no_such_model'", RES18)
    proc = run_cli(["download"], tmp_path, env=env)
    assert proc.returncode == 2
    assert_one_line_error(proc, "--all")
    proc = run_cli(["download", RES18], tmp_path, env=env)  # nothing listens
    assert proc.returncode == 1
    info = fasterrcnn.get_preset(RES18).weights
    assert_one_line_error(
        proc, f"http://127.0.0.1:9/{info.file_name}", str(tmp_path / "cache" / info.file_name)
    )


@dataclass(frozen=True)
class Source:
    preset: str
    file_name: str

    def write(self, folder: Path) -> Path:
        path = folder / self.file_name
        if self.preset.startswith("torchvision"):
            shapes = load_shapes(DATA / "torchvision" / "torchvision_state_dict_shapes.json")
            torch.save(torch_seeded(shapes), path)
        elif self.preset.startswith("detectron2"):
            path.write_bytes(model_zoo_pickle())
        else:
            folder_name = "megengine_v1" if self.preset.endswith("mge1") else "megengine_v0"
            shapes = load_shapes(DATA / folder_name / f"{folder_name}_state_dict_shapes.json")
            path.write_bytes(megengine_pickle_bytes(numpy_seeded(shapes)))
        return path


SOURCES = [
    Source("torchvision_fasterrcnn_resnet50_fpn", "tv.pth"),
    Source("faster_rcnn_res50_coco_1x_800size", "mge0.pkl"),
    Source("faster_rcnn_res50_coco_1x_800size_mge1", "mge1.pkl"),
    Source("detectron2_faster_rcnn_R_50_FPN_1x", "d2.pkl"),
]


@pytest.mark.parametrize(
    "source",
    # The default preset's file in the default run; every family's in the slow run (CI).
    [s if s.preset == DEFAULT_MODEL else pytest.param(s, marks=pytest.mark.slow) for s in SOURCES],
    ids=[s.preset for s in SOURCES],
)
def test_converted_checkpoint_gives_its_sources_outputs(source, tmp_path, capsys):
    src = source.write(tmp_path)
    dst = tmp_path / "converted.safetensors"
    assert main(["convert", str(src), str(dst), "--model", source.preset]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {dst} ({source.preset}, ")
    native = read_native(dst)
    assert native.preset == source.preset and native.metadata["source_file"] == src.name
    assert native.config == fasterrcnn.get_preset(source.preset).config

    image = IMAGES / "000000000802.jpg"
    expected = fasterrcnn.create_model(source.preset, weights=src).predict(image)
    converted = fasterrcnn.create_model(weights=dst)  # no preset named: the file's own model
    got = converted.predict(image)
    assert len(got.boxes) == len(expected.boxes) > 0
    np.testing.assert_array_equal(got.boxes, expected.boxes)
    np.testing.assert_array_equal(got.scores, expected.scores)
    np.testing.assert_array_equal(got.category_ids, expected.category_ids)
    assert got.class_names == expected.class_names

    again = tmp_path / "again.safetensors"  # a native file converts to itself
    assert main(["convert", str(dst), str(again)]) == 0
    assert read_native(again).config == native.config


def test_convert_bad_input(tmp_path, capsys):
    tv = SOURCES[0].write(tmp_path)
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(tv), str(out), "--model", "faster_rcnn_res50_coco_1x_800size"]) == 2
    err = capsys.readouterr().err.strip()
    assert "looks like a torchvision checkpoint" in err and "\n" not in err
    assert main(["convert", str(tmp_path / "absent.pkl"), str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["convert", str(tv), str(tmp_path / "no" / "dir" / "x.safetensors"),
                 "--model", SOURCES[0].preset]) == 2  # fmt: skip
    assert "cannot write" in capsys.readouterr().err
    assert not out.exists()
