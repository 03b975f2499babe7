"""Weight downloads against a local HTTP server, the cache, checksums, and preset data."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers.weights_server import WeightsServer

import fasterrcnn
from fasterrcnn.cli import main
from fasterrcnn.zoo import presets
from fasterrcnn.zoo.catalog import format_size, tensor_bytes
from fasterrcnn.zoo.download import DownloadError, cached_path, fetch_weights
from fasterrcnn.zoo.presets import PRESETS, WeightsInfo


@pytest.fixture
def server():
    """A weight-file server on 127.0.0.1 (see weights_server.py)."""
    srv = WeightsServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("FASTERRCNN_HOME", str(path))
    return path


@pytest.fixture
def mirror(server, monkeypatch) -> WeightsServer:
    """Every download goes to the local server (FASTERRCNN_MIRROR)."""
    monkeypatch.setenv("FASTERRCNN_MIRROR", server.base_url)
    return server


UNREACHABLE = "https://weights.invalid/models/"


def _info(name: str, data: bytes | None = None, **checksums: str) -> WeightsInfo:
    """A published file at an address that only the mirror can serve."""
    if data is not None and not checksums:
        checksums = {"sha256": hashlib.sha256(data).hexdigest()[:8]}
    return WeightsInfo(name, UNREACHABLE + name, coco_map=1.0, **checksums)


def _cached(cache: Path) -> list[str]:
    """Files in the cache, the folder of lock files aside."""
    return sorted(p.name for p in cache.iterdir() if p.name != ".locks")


def test_download_through_the_mirror_caches_verifies_and_shows_progress(mirror, cache, capsys):
    data = bytes(range(256)) * 2000  # 512 kB: several chunks
    mirror.files["w.pth"] = data
    path = fetch_weights(_info("w.pth", data))
    assert path == cache / "w.pth" and path.read_bytes() == data
    err = capsys.readouterr().err
    assert "w.pth" in err and "100%" in err  # the progress bar, on stderr
    assert fetch_weights(_info("w.pth", data)) == path
    assert mirror.hits == {"w.pth": 1}  # the second call used the cache
    assert _cached(cache) == ["w.pth"]


def test_md5_prefix_in_the_file_name_is_checked(mirror, cache):
    data = b"detectron2-style file"
    mirror.files["model_final.pkl"] = data
    md5 = hashlib.md5(data).hexdigest()
    assert fetch_weights(_info("model_final.pkl", data, md5=md5[:6])).read_bytes() == data
    mirror.files["model_final_000000.pkl"] = data
    with pytest.raises(
        DownloadError, match=r"checksum mismatch \(md5 [0-9a-f]{6}, expected 000000\)"
    ):
        fetch_weights(_info("model_final_000000.pkl", md5="000000"))
    assert _cached(cache) == ["model_final.pkl"]


def test_checksum_mismatch_is_one_line_and_caches_nothing(mirror, cache):
    mirror.files["w.pth"] = b"tampered"
    with pytest.raises(DownloadError) as err:
        fetch_weights(_info("w.pth", sha256="00000000"))
    message = str(err.value)
    assert "checksum mismatch (sha256" in message and "expected 00000000" in message
    assert "\n" not in message and str(cache / "w.pth") in message
    assert _cached(cache) == []  # no partial or unverified file left behind


def test_connection_dropped_mid_file_caches_nothing(mirror, cache):
    data = b"x" * (3 * WeightsServer.CHUNK)
    mirror.files["w.pth"] = data
    mirror.drop_after = WeightsServer.CHUNK
    with pytest.raises(DownloadError, match=r"w\.pth") as err:
        fetch_weights(_info("w.pth", data), progress=False)
    assert "\n" not in str(err.value)
    assert _cached(cache) == []
    mirror.drop_after = None  # the next try starts over and succeeds
    assert fetch_weights(_info("w.pth", data), progress=False).read_bytes() == data


def test_cached_file_is_used_after_the_server_stops(mirror, cache, monkeypatch):
    data = b"weights-bytes"
    mirror.files["w.pth"] = data
    path = fetch_weights(_info("w.pth", data))
    mirror.stop()
    assert fetch_weights(_info("w.pth", data)) == path
    monkeypatch.delenv("FASTERRCNN_MIRROR")  # the real address is unreachable too
    assert fetch_weights(_info("w.pth", data)) == path


def test_offline_message_names_the_url_and_the_path(cache, monkeypatch):
    monkeypatch.setenv("FASTERRCNN_MIRROR", "http://127.0.0.1:9/mirror/")  # nothing listens
    with pytest.raises(DownloadError) as err:
        fetch_weights(_info("w.pth"), timeout=5)
    message = str(err.value)
    assert "could not download http://127.0.0.1:9/mirror/w.pth" in message
    assert f"put the file at {cache / 'w.pth'} by hand" in message
    assert "\n" not in message and _cached(cache) == []


def test_missing_file_on_the_server(mirror, cache):
    with pytest.raises(DownloadError, match=r"could not download .*/nothing\.pth \(HTTP 404"):
        fetch_weights(_info("nothing.pth"))


def test_unwritable_cache_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FASTERRCNN_HOME", str(blocker / "cache"))
    with pytest.raises(DownloadError, match=r"cache folder .*a-file/cache is not writable"):
        fetch_weights(_info("w.pth"))


_FETCH_IN_CHILD = """
import sys
from fasterrcnn.zoo.download import fetch_weights
from fasterrcnn.zoo.presets import WeightsInfo
info = WeightsInfo("big.pth", "https://weights.invalid/big.pth", 1.0, sha256=sys.argv[1])
print(fetch_weights(info, progress=False))
"""


def test_two_processes_download_once(mirror, cache, tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB, sent in 16 slow chunks
    mirror.files["big.pth"] = data
    mirror.delay = 0.05
    env = {**os.environ, "FASTERRCNN_HOME": str(cache), "FASTERRCNN_MIRROR": mirror.base_url}
    digest = hashlib.sha256(data).hexdigest()
    command = [sys.executable, "-c", _FETCH_IN_CHILD, digest]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    children = [subprocess.Popen(command, env=env, text=True, **pipes) for _ in range(2)]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    assert {out.strip() for out, _ in outputs} == {str(cache / "big.pth")}
    assert mirror.hits == {"big.pth": 1}
    assert (cache / "big.pth").read_bytes() == data and _cached(cache) == ["big.pth"]


@pytest.fixture
def published_tv(mirror, cache, tv_state_dict, tmp_path, monkeypatch) -> Path:
    """The seeded torchvision weights as if they were torchvision's published COCO file: the
    preset's checksum is the file's, and the mirror serves it under the published name."""
    path = tmp_path / "fasterrcnn_resnet50_fpn_coco.pth"
    torch.save(tv_state_dict, path)
    preset = PRESETS["torchvision_fasterrcnn_resnet50_fpn"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    info = replace(preset.weights, sha256=digest[:8])
    monkeypatch.setitem(presets.PRESETS, preset.name, replace(preset, weights=info))
    mirror.files[info.file_name] = path.read_bytes()
    return path


def test_published_file_runs_with_its_settings_however_it_is_passed(published_tv, tmp_path):
    name = "torchvision_fasterrcnn_resnet50_fpn"
    downloaded = fasterrcnn.create_model(name, pretrained=True)
    assert downloaded.backbone.body.bn1.eps == 0.0  # torchvision runs its COCO file with eps 0
    cached = fasterrcnn.get_preset(name).weights
    by_path = fasterrcnn.create_model(name, weights=cached_path(cached))
    copied = tmp_path / "renamed.pth"
    copied.write_bytes(published_tv.read_bytes())
    for model in (by_path, fasterrcnn.create_model(name, weights=copied)):
        assert model.backbone.body.bn1.eps == 0.0
        assert {m.eps for m in model.modules() if hasattr(m, "eps")} == {0.0}
    # Converted to the native format, it keeps them.
    native = tmp_path / "tv.safetensors"
    assert main(["convert", str(copied), str(native), "--model", name]) == 0
    assert fasterrcnn.create_model(weights=native).backbone.body.bn1.eps == 0.0
    # Any other file of the family runs with the architecture's 1e-5.
    other = torch.load(published_tv, weights_only=True)
    other["rpn.head.cls_logits.bias"] = other["rpn.head.cls_logits.bias"] + 1
    torch.save(other, tmp_path / "other.pth")
    assert (
        fasterrcnn.create_model(name, weights=tmp_path / "other.pth").backbone.body.bn1.eps == 1e-5
    )
    assert fasterrcnn.create_model(name).backbone.body.bn1.eps == 1e-5
    torch.testing.assert_close(
        downloaded.state_dict()["backbone.body.conv1.weight"],
        by_path.state_dict()["backbone.body.conv1.weight"],
    )


def test_presets_record_their_provenance():
    names = fasterrcnn.list_models()
    assert "faster_rcnn_res50_coco_1x_800size" in names and len(names) == len(set(names)) == 15
    for name in names:
        preset = fasterrcnn.get_preset(name)
        assert preset.weights is not None and preset.weights.url.endswith(preset.weights.file_name)
        assert preset.source and preset.era and preset.weights.coco_map > 30
        assert len(preset.config.classes.category_ids) == preset.config.box_head.num_classes
    seed = fasterrcnn.get_preset("faster_rcnn_res50_coco_1x_800size")
    assert seed.weights.file_name == "faster_rcnn_res50_coco_1x_800size_38dot8_5e195d80.pkl"
    assert seed.weights.coco_map == 38.8


def test_a_folder_mirror_works_offline(cache, tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    data = b"copied onto an air-gapped machine"
    (folder / "w.pth").write_bytes(data)
    monkeypatch.setenv("FASTERRCNN_MIRROR", folder.as_uri())
    assert fetch_weights(_info("w.pth", data)).read_bytes() == data


def test_readme_presets_table_matches_the_presets():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 6:
            rows[cells[0].split("`")[1]] = cells
    assert sorted(rows) == fasterrcnn.list_models()
    for name, (_, _, _, mean_ap, file_cell, size) in rows.items():
        weights = fasterrcnn.get_preset(name).weights
        assert float(mean_ap) == weights.coco_map and f"`{weights.file_name}`" in file_cell
        config = fasterrcnn.get_preset(name).config
        assert size == format_size(tensor_bytes(config))
