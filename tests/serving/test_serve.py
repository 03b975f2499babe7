"""``fasterrcnn serve``: the JSON of ``POST /v1/detect`` against ``fasterrcnn detect``'s for
the same images, batched concurrent answers against sequential ones, the other endpoints, and
every bad input of the issue, each refused with its own 4xx/503 JSON error while the requests
before and after it are answered correctly.

The images are thin strips of the test images (40 x 640 and so on: the network scales them to
about 83 x 1333), which keeps a request about half a second on a CPU. Sliced requests
(``slice=``, ``slice_overlap=``, ``serve --slice``) run the small R18 of ``pet_model`` and
are compared with ``predict(..., slicing=...)``.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers.seeded import DATA

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from helpers.serving import app_server, cli_server, multipart, post_image, request

from fasterrcnn.cli import main
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.predict import predict
from fasterrcnn.inference.slicing import SliceOptions, tile_windows
from fasterrcnn.serving.app import ServeOptions

IMAGES = DATA / "coco" / "val2017"
TORCHVISION = "torchvision_fasterrcnn_resnet50_fpn"
THRESHOLD = 0.1
MAX_BODY = 1 << 20
OPTIONS = ServeOptions(max_batch=4, max_wait_ms=50, max_queue=8, max_body_bytes=MAX_BODY)


@pytest.fixture(scope="module")
def strips(tmp_path_factory) -> dict[str, Path]:
    """Thin JPEG strips of three test images, of two padded network sizes."""
    folder = tmp_path_factory.mktemp("serve_strips")
    crops = {"a": ("000000000139.jpg", 150, 40), "b": ("000000010764.jpg", 100, 40),
             "c": ("000000000802.jpg", 300, 56)}  # fmt: skip
    out = {}
    for stem, (name, top, rows) in crops.items():
        path = folder / f"{stem}.jpg"
        assert cv2.imwrite(str(path), cv2.imread(str(IMAGES / name))[top : top + rows])
        out[stem] = path
    return out


@pytest.fixture(scope="module")
def port(tv_model):
    with app_server(tv_model, TORCHVISION, OPTIONS) as port:
        yield port


@pytest.fixture(scope="module")
def cli_outputs(strips, tv_weights_path, tmp_path_factory) -> Path:
    """``fasterrcnn detect`` on the strips: a drawn JPEG and a JSON file per image."""
    out = tmp_path_factory.mktemp("detect_out")
    args = ["detect", *map(str, strips.values()), "--model", TORCHVISION,
            "--weights", str(tv_weights_path), "--out", str(out),
            "--score-threshold", str(THRESHOLD)]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def reference(strips, port) -> dict[str, dict]:
    """Each strip's answer, one request at a time."""
    answers = {}
    for stem, path in strips.items():
        reply = post_image(port, path.read_bytes(), score_threshold=THRESHOLD)
        assert reply.status == 200, reply.body
        answers[stem] = reply.json()
    return answers


def _detections(answer: dict) -> list[dict]:
    return answer["detections"]


def _assert_good(port: int, strips: dict[str, Path], reference: dict[str, dict]) -> None:
    """The server still answers a good request, with the reference answer."""
    reply = post_image(port, strips["a"].read_bytes(), score_threshold=THRESHOLD)
    assert reply.status == 200, reply.body
    assert _detections(reply.json()) == _detections(reference["a"])


def _assert_refused(reply, status: int, *needles: str) -> str:
    assert reply.status == status, (reply.status, reply.body)
    error = reply.json()["error"]
    assert isinstance(error, str) and "\n" not in error and "Traceback" not in error
    for needle in needles:
        assert needle in error, error
    return error


# --------------------------------------------------------------------------- answers


def test_json_equals_detect_cli(strips, port, cli_outputs, reference):
    for stem in strips:
        expected = json.loads((cli_outputs / f"{stem}.json").read_text())
        answer = reference[stem]
        assert answer["model"] == TORCHVISION
        assert answer["image"] == {"width": expected["width"], "height": expected["height"]}
        assert len(answer["detections"]) == len(expected["detections"]) > 0
        for got, want in zip(answer["detections"], expected["detections"], strict=True):
            assert got["label"] == want["class_name"]
            assert got["category_id"] == want["category_id"]
            assert got["score"] == want["score"]
            box = got["box"]
            assert [box["xmin"], box["ymin"], box["xmax"], box["ymax"]] == want["box"]
        assert set(answer["timing_ms"]) == {"decode", "queue", "inference", "total"}

    # The same image as a multipart upload, options as form fields.
    body, content_type = multipart(
        {"score_threshold": str(THRESHOLD)}, {"image": ("a.jpg", strips["a"].read_bytes())}
    )
    reply = request(port, "POST", "/v1/detect", body, {"Content-Type": content_type})
    assert reply.status == 200, reply.body
    assert _detections(reply.json()) == _detections(reference["a"])


def test_drawn_jpeg_equals_detect_cli(strips, port, cli_outputs):
    for stem, path in strips.items():
        reply = post_image(port, path.read_bytes(), score_threshold=THRESHOLD, format="image")
        assert reply.status == 200 and reply.headers["content-type"] == "image/jpeg"
        assert reply.body == (cli_outputs / f"{stem}.jpg").read_bytes()


def test_options_select_detections(strips, port, reference):
    full = _detections(reference["a"])
    top = full[0]["label"]
    reply = post_image(port, strips["a"].read_bytes(), score_threshold=THRESHOLD,
                       classes=f"{top.upper()},{full[0]['category_id']}", max_detections=2)  # fmt: skip
    assert reply.status == 200
    assert _detections(reply.json()) == [d for d in full if d["label"] == top][:2]
    reply = post_image(port, strips["a"].read_bytes(), score_threshold=full[2]["score"])
    assert _detections(reply.json()) == [d for d in full if d["score"] >= full[2]["score"]]


def test_concurrent_requests_equal_sequential(strips, port, reference):
    before = request(port, "GET", "/healthz").json()
    stems = ["a", "b", "c", "a", "b", "a", "c", "b"]
    with ThreadPoolExecutor(len(stems)) as pool:
        replies = list(pool.map(
            lambda s: post_image(port, strips[s].read_bytes(), score_threshold=THRESHOLD), stems
        ))  # fmt: skip
    for stem, reply in zip(stems, replies, strict=True):
        assert reply.status == 200, reply.body
        assert _detections(reply.json()) == _detections(reference[stem]), stem
    after = request(port, "GET", "/healthz").json()
    assert after["images_done"] - before["images_done"] == len(stems)
    assert after["batches_done"] - before["batches_done"] < len(stems)  # some shared a batch


def test_models_and_health(port, tv_model):
    info = request(port, "GET", "/v1/models").json()
    classes = tv_model.config.classes
    assert info["model"] == TORCHVISION
    assert [c["id"] for c in info["classes"]] == list(classes.category_ids)
    assert [c["name"] for c in info["classes"]] == list(classes.names)
    assert info["input"]["short_side"] == tv_model.config.input.short_side
    assert info["limits"]["max_batch"] == OPTIONS.max_batch
    assert request(port, "GET", "/healthz").json()["status"] == "ok"
    page = request(port, "GET", "/")
    assert page.status == 200 and b"/static/app.js" in page.body
    for asset in ("app.js", "style.css"):
        assert request(port, "GET", f"/static/{asset}").status == 200


# --------------------------------------------------------------------------- bad input


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG of a few kB that declares ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 100, 9)  # the first rows, all black
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _truncated_png(path: Path) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.imread(str(path)))
    assert ok
    return encoded.tobytes()[: len(encoded) // 2]


BAD_BODIES = {
    "not an image": (lambda s: b"hello, not an image", "image/jpeg", 400, "not a readable image"),
    "truncated JPEG": (lambda s: s["a"].read_bytes()[:3000], "image/jpeg", 400, "truncated JPEG"),
    "truncated PNG": (lambda s: _truncated_png(s["a"]), "image/png", 400, "not a readable image"),
    "empty body": (lambda s: b"", "image/jpeg", 400, "empty request body"),
    "wrong content type": (lambda s: s["a"].read_bytes(), "text/plain", 415, "'text/plain'"),
    "form-encoded": (
        lambda s: s["a"].read_bytes(),
        "application/x-www-form-urlencoded",
        415,
        "multipart/form-data field 'image'",
    ),
    "20000 x 20000 PNG": (
        lambda s: _png_header_only(20000, 20000),
        "image/png",
        413,
        "image too large (400,000,000 pixels",
    ),
    "over the size limit": (
        lambda s: b"\xff" * (MAX_BODY + 1),
        "image/jpeg",
        413,
        f"limit of {MAX_BODY:,}",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_body(case, strips, port, reference):
    make, content_type, status, needle = BAD_BODIES[case]
    data = make(strips)
    if case == "20000 x 20000 PNG":
        assert len(data) < 8000
    _assert_refused(post_image(port, data, content_type), status, needle)
    _assert_good(port, strips, reference)


BAD_OPTIONS = {
    "negative threshold": ({"score_threshold": "-0.5"}, "score_threshold must be between 0 and 1"),
    "non-numeric threshold": ({"score_threshold": "abc"}, "not 'abc'"),
    "nan threshold": ({"score_threshold": "nan"}, "score_threshold must be a number"),
    "unknown class": ({"classes": "person,unicorn"}, "unknown class 'unicorn'"),
    "unknown class id": ({"classes": "1000"}, "unknown class '1000'"),
    "empty classes": ({"classes": ","}, "classes is empty"),
    "negative max_detections": ({"max_detections": "-1"}, "max_detections must be a whole"),
    "unknown format": ({"format": "xml"}, "format must be 'json' or 'image'"),
    "unknown parameter": ({"threshold": "0.3"}, "unknown parameter 'threshold'"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_option(case, strips, port, reference):
    query, needle = BAD_OPTIONS[case]
    _assert_refused(post_image(port, strips["a"].read_bytes(), **query), 400, needle)


def test_bad_multipart(strips, port, reference):
    body, content_type = multipart({"score_threshold": "0.2"}, {"picture": ("a.jpg", b"x")})
    reply = request(port, "POST", "/v1/detect", body, {"Content-Type": content_type})
    _assert_refused(reply, 400, "no field 'image'")
    body, content_type = multipart({"image": "just text"}, {})
    reply = request(port, "POST", "/v1/detect", body, {"Content-Type": content_type})
    _assert_refused(reply, 400, "'image' must be a file")
    reply = request(port, "POST", "/v1/detect", b"--x\r\nnonsense",
                    {"Content-Type": "multipart/form-data"})  # fmt: skip
    _assert_refused(reply, 400, "multipart")
    _assert_refused(request(port, "GET", "/v1/detect"), 405, "Method Not Allowed")
    _assert_refused(request(port, "GET", "/nowhere"), 404, "Not Found")
    _assert_good(port, strips, reference)


def test_body_over_limit_without_length(strips, port, reference):
    """A chunked upload (no Content-Length) is cut off as soon as it passes the limit."""
    chunks = (b"\xff" * 65536 for _ in range(MAX_BODY // 65536 + 2))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/detect", body=chunks, headers={"Content-Type": "image/jpeg"},
                 encode_chunked=True)  # fmt: skip
    response = conn.getresponse()
    assert response.status == 413
    assert "limit of" in json.loads(response.read())["error"]
    conn.close()
    _assert_good(port, strips, reference)


def _raw_upload(port: int, declared: int, sent: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {declared}\r\n\r\n")  # fmt: skip
    sock.sendall(head.encode() + sent)
    return sock


def test_client_disconnects_mid_upload(strips, port, reference):
    data = strips["a"].read_bytes()
    for _ in range(3):
        _raw_upload(port, len(data), data[: len(data) // 3]).close()
    _assert_good(port, strips, reference)
    deadline = time.monotonic() + 10
    while request(port, "GET", "/healthz").json()["in_progress"] != 0:
        assert time.monotonic() < deadline, "abandoned uploads still counted in progress"
        time.sleep(0.05)


def test_slow_upload_times_out(tv_model, strips):
    options = ServeOptions(max_batch=1, max_wait_ms=0, timeout_s=3.0)
    with app_server(tv_model, TORCHVISION, options) as port:
        data = strips["a"].read_bytes()
        sock = _raw_upload(port, len(data), data[:100])
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 408
        error = json.loads(response.read())["error"]
        sock.close()
        assert error == "request body not received within 3 s"
        reply = post_image(port, data, score_threshold=THRESHOLD)
        assert reply.status == 200


def test_200_requests_at_once(strips, port, reference):
    """A burst past the queue's bound: every request is answered, 200 with the right detections
    or 503 with Retry-After; none is lost and the server answers afterwards."""
    data = strips["a"].read_bytes()
    with ThreadPoolExecutor(200) as pool:
        replies = list(pool.map(lambda _: post_image(port, data, score_threshold=THRESHOLD),
                                range(200)))  # fmt: skip
    answered = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status == 503]
    assert len(answered) + len(refused) == 200, sorted({r.status for r in replies})
    assert len(answered) >= OPTIONS.max_queue and refused
    for reply in answered:
        assert _detections(reply.json()) == _detections(reference["a"])
    for reply in refused:
        assert int(reply.headers["retry-after"]) >= 1
        assert "busy" in reply.json()["error"]
    _assert_good(port, strips, reference)


# --------------------------------------------------------------------------- command line


def test_serve_without_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the extra were not installed
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "fasterrcnn: error: serve needs its extra: pip install 'fasterrcnn[serve]'"


def test_serve_port_in_use(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], lines


def test_decoder_refuses_before_decoding():
    """The pixel limit is checked on the header: a 7000 x 7000 PNG of a few kB is named."""
    from fasterrcnn.data.images import ImageTooLarge, decode_image

    data = _png_header_only(7000, 7000)
    with pytest.raises(ImageTooLarge, match=r"^x: image too large \(7000 x 7000 = 49,000,000 "):
        decode_image(data, "x", max_pixels=40_000_000)
    image = cv2.imread(str(IMAGES / "000000000139.jpg"))
    _, encoded = cv2.imencode(".png", image)
    decoded = decode_image(encoded.tobytes(), max_pixels=image.shape[0] * image.shape[1])
    assert (decoded == image[:, :, ::-1]).all()


def test_command_defaults_are_the_servers():
    from fasterrcnn.cli import build_parser

    args = build_parser().parse_args(["serve"])
    defaults = ServeOptions()
    assert (args.max_batch, args.max_wait_ms, args.max_queue) == (
        defaults.max_batch, defaults.max_wait_ms, defaults.max_queue,
    )  # fmt: skip
    assert round(args.max_body_mb * (1 << 20)) == defaults.max_body_bytes
    assert (args.max_pixels, args.timeout, args.score_threshold, args.max_tiles) == (
        defaults.max_pixels, defaults.timeout_s, defaults.score_threshold, defaults.max_tiles,
    )  # fmt: skip


# --------------------------------------------------------------------------- sliced requests
#
# The small R18 of ``pet_model`` (short side 320) behind its own server: a 128 x 256 crop with
# ``slice=128`` runs as three tiles and the whole image (each scaled to the network's 320).

PETS = ServeOptions(max_batch=3, max_wait_ms=50, max_queue=8)
SLICED = SliceOptions(128, overlap=0.25)


def _png(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    return encoded.tobytes()


def _api_form(detections: Detections) -> list[dict]:
    """``detections`` as ``/v1/detect`` answers them (``detect``'s rounding)."""
    return [
        {"label": d["class_name"], "category_id": d["category_id"], "score": d["score"],
         "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), d["box"], strict=True))}
        for d in detections.detection_dicts()
    ]  # fmt: skip


@pytest.fixture(scope="module")
def crops() -> dict[str, np.ndarray]:
    """RGB crops of a test image: larger than a 128 tile, and within one."""
    rgb = cv2.imread(str(IMAGES / "000000000139.jpg"))[:, :, ::-1]
    return {"large": rgb[150:278, 200:456].copy(), "small": rgb[150:250, 300:420].copy()}


@pytest.fixture(scope="module")
def pet_port(pet_model):
    with app_server(pet_model, "pets", PETS) as port:
        yield port


@pytest.fixture(scope="module")
def pet_expected(pet_model, crops) -> dict[str, list[dict]]:
    """The library's answers at score threshold 0: each crop whole, the large one sliced."""
    expected = {name: _api_form(predict(pet_model, rgb)) for name, rgb in crops.items()}
    sliced = predict(pet_model, crops["large"], slicing=SLICED, score_threshold=0.0)
    expected["sliced"] = _api_form(sliced)
    assert len(expected["sliced"]) > 0 and len(expected["large"]) > 0
    assert expected["sliced"] != expected["large"]  # slicing changes the answer
    return expected


def test_sliced_request_equals_predict(pet_model, pet_port, crops, pet_expected):
    data = _png(crops["large"])
    before = request(pet_port, "GET", "/healthz").json()
    reply = post_image(pet_port, data, "image/png", score_threshold=0, slice=128,
                       slice_overlap=0.25)  # fmt: skip
    assert reply.status == 200, reply.body
    assert _detections(reply.json()) == pet_expected["sliced"]
    assert request(pet_port, "GET", "/healthz").json()["sliced_done"] == before["sliced_done"] + 1
    # As form fields of a multipart upload.
    body, content_type = multipart({"score_threshold": "0", "slice": "128", "slice_overlap":
                                    "0.25"}, {"image": ("large.png", data)})  # fmt: skip
    reply = request(pet_port, "POST", "/v1/detect", body, {"Content-Type": content_type})
    assert reply.status == 200, reply.body
    assert _detections(reply.json()) == pet_expected["sliced"]
    # A higher threshold drops tile detections before merging, as predict's does.
    sliced = predict(pet_model, crops["large"], slicing=SLICED, score_threshold=0.3)
    reply = post_image(pet_port, data, "image/png", score_threshold=0.3, slice=128,
                       slice_overlap=0.25)  # fmt: skip
    assert _detections(reply.json()) == _api_form(sliced)


def test_sliced_and_plain_requests_at_once(pet_port, crops, pet_expected):
    """A sliced request among plain ones: each gets its own answer (the tiles never share a
    batch with another request's image)."""
    jobs = [("large", {}), ("sliced", {"slice": 128, "slice_overlap": 0.25}), ("small", {})]
    jobs.append(jobs[0])

    def send(job: tuple[str, dict]):
        image = crops["small" if job[0] == "small" else "large"]
        return post_image(pet_port, _png(image), "image/png", score_threshold=0, **job[1])

    with ThreadPoolExecutor(len(jobs)) as pool:
        replies = list(pool.map(send, jobs))
    for (name, _), reply in zip(jobs, replies, strict=True):
        assert reply.status == 200, reply.body
        assert _detections(reply.json()) == pet_expected[name], name


def test_image_within_one_tile_is_the_plain_result(pet_port, crops, pet_expected):
    reply = post_image(pet_port, _png(crops["small"]), "image/png", score_threshold=0, slice=128)
    assert reply.status == 200, reply.body
    assert _detections(reply.json()) == pet_expected["small"]


BAD_SLICES = {
    "32": ({"slice": "32"}, "slice size must be at least 64 pixels, not 32"),
    "not a number": (
        {"slice": "abc"},
        "slice must be a whole number of pixels (0: off), not 'abc'",
    ),
    "negative": ({"slice": "-128"}, "slice must be a whole number of pixels (0: off), not '-128'"),
    "fraction": ({"slice": "128.5"}, "slice must be a whole number"),
    "overlap 0.95": (
        {"slice": "128", "slice_overlap": "0.95"},
        "slice overlap must be in [0, 0.9)",
    ),
    "overlap nan": ({"slice": "128", "slice_overlap": "nan"}, "slice_overlap must be a number"),
    "overlap without slice": ({"slice_overlap": "0.3"}, "slice_overlap needs sliced inference"),
    "overlap, slice 0": ({"slice": "0", "slice_overlap": "0.3"}, "slice_overlap needs sliced"),
}


@pytest.mark.parametrize("case", list(BAD_SLICES))
def test_bad_slice_option(case, pet_port, crops):
    query, needle = BAD_SLICES[case]
    data = _png(crops["large"])
    error = _assert_refused(post_image(pet_port, data, "image/png", **query), 400, needle)
    if case == "32":  # the library's own message, as it is
        with pytest.raises(ValueError) as raised:
            SliceOptions(32).check()
        assert error == str(raised.value)
    body, content_type = multipart(query, {"image": ("large.png", data)})
    reply = request(pet_port, "POST", "/v1/detect", body, {"Content-Type": content_type})
    _assert_refused(reply, 400, needle)


def test_too_many_tiles_are_refused(pet_port, crops, pet_expected):
    """Slices of 64 overlapping by 0.85 cut the 256 x 128 crop into 21 x 8 tiles, more than
    the server's 100; the same image in larger tiles is answered."""
    data = _png(crops["large"])
    assert len(tile_windows(128, 256, 64, 0.85)) == 21 * 8 > PETS.max_tiles
    reply = post_image(pet_port, data, "image/png", slice=64, slice_overlap=0.85)
    message = _assert_refused(reply, 400, "slice 64 cuts")
    assert message == (
        "slice 64 cuts this 256 x 128 image into 168 tiles, more than this server's 100: "
        "ask for a larger slice"
    )
    reply = post_image(pet_port, data, "image/png", score_threshold=0, slice=128,
                       slice_overlap=0.25)  # fmt: skip
    assert _detections(reply.json()) == pet_expected["sliced"]


def test_command_slice_is_the_requests_default(pet_file, crops, pet_expected, tmp_path):
    args = ["--weights", pet_file, "--slice", 128, "--slice-overlap", 0.25, "--max-wait-ms", 0]
    with cli_server(args, tmp_path) as port:
        assert request(port, "GET", "/v1/models").json()["slicing"] == {
            "size": 128, "overlap": 0.25, "whole_image": True, "merge": "nms", "merge_iou": 0.5,
        }  # fmt: skip
        data = _png(crops["large"])
        reply = post_image(port, data, "image/png", score_threshold=0)
        assert reply.status == 200, reply.body
        assert _detections(reply.json()) == pet_expected["sliced"]
        reply = post_image(port, data, "image/png", score_threshold=0, slice=0)  # off
        assert _detections(reply.json()) == pet_expected["large"]


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--slice", "32"], "--slice: slice size must be at least 64 pixels, not 32"),
     (["--slice", "512", "--slice-overlap", "0.95"],
      "--slice: slice overlap must be in [0, 0.9), not 0.95")],
)  # fmt: skip
def test_command_refuses_a_bad_slice_before_loading(option, message, tmp_path, capsys):
    missing = tmp_path / "no_such_weights.safetensors"  # loading it would fail differently
    assert main(["serve", "--port", "0", "--weights", str(missing), *option]) == 2
    assert capsys.readouterr().err.strip() == f"fasterrcnn: error: {message}"
    from fasterrcnn.cli import build_parser

    assert build_parser().parse_args(["serve"]).slice is ServeOptions().slicing is None
