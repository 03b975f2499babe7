"""Weight downloads against a local HTTP server, the cache, checksums, and preset data."""

from __future__ import annotations

import hashlib
import http.server
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch

import fasterrcnn
from fasterrcnn.zoo import presets
from fasterrcnn.zoo.download import DownloadError, fetch_weights
from fasterrcnn.zoo.presets import PRESETS, WeightsInfo


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (base_url, folder, hits)."""
    folder = tmp_path / "www"
    folder.mkdir()
    hits: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(Handler, directory=str(folder))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder, hits
    httpd.shutdown()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("FASTERRCNN_HOME", str(path))
    return path


def _serve(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_download_caches_and_verifies(server, cache):
    base, folder, hits = server
    digest = _serve(folder, "w.pth", b"weights-bytes")
    info = WeightsInfo("w.pth", base + "w.pth", coco_map=1.0, sha256=digest[:8])
    path = fetch_weights(info)
    assert path == cache / "w.pth" and path.read_bytes() == b"weights-bytes"
    assert fetch_weights(info) == path
    assert hits == ["/w.pth"]  # the second call used the cache


def test_checksum_mismatch_is_refused_and_not_cached(server, cache):
    base, folder, _ = server
    _serve(folder, "w.pth", b"tampered")
    info = WeightsInfo("w.pth", base + "w.pth", coco_map=1.0, sha256="00000000")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_weights(info)
    assert not (cache / "w.pth").exists()
    assert list(cache.iterdir()) == []  # no partial file left behind


def test_offline_and_missing_file_errors(server, cache):
    base, _, _ = server
    with pytest.raises(DownloadError, match=r"could not download .*missing\.pth"):
        fetch_weights(WeightsInfo("missing.pth", base + "missing.pth", coco_map=1.0))
    closed = WeightsInfo("w.pth", "http://127.0.0.1:9/w.pth", coco_map=1.0)
    with pytest.raises(DownloadError, match="could not download"):
        fetch_weights(closed, timeout=5)


def test_pretrained_torchvision_uses_the_files_norm_eps(server, cache, tv_state_dict, monkeypatch):
    base, folder, _ = server
    path = folder / "tv.pth"
    torch.save(tv_state_dict, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    preset = PRESETS["torchvision_fasterrcnn_resnet50_fpn"]
    info = replace(preset.weights, url=base + "tv.pth", file_name="tv.pth", sha256=digest[:8])
    monkeypatch.setitem(presets.PRESETS, preset.name, replace(preset, weights=info))
    model = fasterrcnn.create_model(preset.name, pretrained=True)
    assert model.backbone.body.bn1.eps == 0.0  # torchvision runs its COCO_V1 file with eps 0
    assert fasterrcnn.create_model(preset.name).backbone.body.bn1.eps == 1e-5
    torch.testing.assert_close(
        model.state_dict()["backbone.body.conv1.weight"],
        tv_state_dict["backbone.body.conv1.weight"],
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
