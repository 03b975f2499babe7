"""The public Python API: presets, ``model.predict`` on every input type, image decoding,
checkpoint formats, and the library's own errors for bad images and bad weights.

Most predictions run on thin strips of the test images (about 100 x 640 pixels): the network
scales them to 208 x 1333 rather than 800 x 1200, which keeps this file fast on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers.seeded import DATA
from safetensors.torch import save_file
from torch import nn

import fasterrcnn
from fasterrcnn.data.coco_classes import COCO_CATEGORIES
from fasterrcnn.data.transforms import resized_size
from fasterrcnn.zoo.checkpoints import load_into

TORCHVISION = "torchvision_fasterrcnn_resnet50_fpn"
IMAGES = DATA / "coco" / "val2017"
JPEG_139 = IMAGES / "000000000139.jpg"  # 426 x 640
JPEG_802 = IMAGES / "000000000802.jpg"  # 640 x 424
NAMES_BY_ID = dict(COCO_CATEGORIES)


def _same(a: fasterrcnn.Detections, b: fasterrcnn.Detections, atol: float = 0.0) -> None:
    """Assert two results agree (exactly, or within ``atol`` on boxes and scores)."""
    assert len(a) == len(b)
    assert a.image_size == b.image_size
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=atol)
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=atol)
    np.testing.assert_array_equal(a.category_ids, b.category_ids)
    assert a.class_names == b.class_names


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def strip_rgb() -> np.ndarray:
    """A 100 x 640 RGB strip of image 139 (cheap to run: the network input is 208 x 1333)."""
    return fasterrcnn.read_image(JPEG_139)[150:250].copy()


@pytest.fixture(scope="module")
def strip_802_rgb() -> np.ndarray:
    """An 80 x 424 strip of image 802: another size, for batching."""
    return fasterrcnn.read_image(JPEG_802)[300:380].copy()


@pytest.fixture(scope="module")
def strip_png(strip_rgb, tmp_path_factory) -> Path:
    """``strip_rgb`` as a (lossless) PNG file."""
    path = tmp_path_factory.mktemp("strip") / "strip.png"
    assert cv2.imwrite(str(path), strip_rgb[:, :, ::-1])
    return path


@pytest.fixture(scope="module")
def full_result(tv_model) -> fasterrcnn.Detections:
    """The seeded model on a full image, given as a str path."""
    return tv_model.predict(str(JPEG_139))


@pytest.fixture(scope="module")
def strip_result(tv_model, strip_png) -> fasterrcnn.Detections:
    """The seeded model on the strip, given as a str path (the reference of the comparisons)."""
    return tv_model.predict(str(strip_png))


# --------------------------------------------------------------------------- presets


def test_list_models_has_torchvision_preset():
    names = fasterrcnn.list_models()
    assert TORCHVISION in names
    assert names == sorted(names)


def test_unknown_model_lists_valid_names():
    with pytest.raises(fasterrcnn.UnknownModelError) as info:
        fasterrcnn.create_model("nope")
    message = str(info.value)
    assert "nope" in message
    for name in fasterrcnn.list_models():
        assert name in message
    assert "\n" not in message


# --------------------------------------------------------------------------- predict


def test_predict_result_fields(full_result):
    det = full_result
    assert isinstance(det, fasterrcnn.Detections)
    n = len(det)
    assert n > 0
    h, w = cv2.imread(str(JPEG_139)).shape[:2]
    assert det.image_size == (h, w) == (426, 640)

    assert det.boxes.shape == (n, 4) and det.boxes.dtype == np.float32
    x1, y1, x2, y2 = det.boxes.T
    assert np.all(x1 >= 0) and np.all(y1 >= 0)
    assert np.all(x2 <= w) and np.all(y2 <= h)
    assert np.all(x2 >= x1) and np.all(y2 >= y1)

    assert det.scores.shape == (n,) and det.scores.dtype == np.float32
    assert np.all(np.diff(det.scores) <= 0), "scores are not sorted decreasingly"
    assert np.all((det.scores >= 0) & (det.scores <= 1))

    assert det.category_ids.shape == (n,)
    assert np.issubdtype(det.category_ids.dtype, np.integer)
    assert np.all((det.category_ids >= 1) & (det.category_ids <= 90))

    assert isinstance(det.class_names, list) and len(det.class_names) == n
    assert all(isinstance(name, str) for name in det.class_names)
    for cid, name in zip(det.category_ids, det.class_names, strict=True):
        assert name == NAMES_BY_ID.get(int(cid), "N/A")

    assert det.source == str(JPEG_139)
    assert det.proposals is None and det.proposal_scores is None


def test_class_table_maps_coco_ids():
    classes = fasterrcnn.get_preset(TORCHVISION).config.classes
    by_id = dict(zip(classes.category_ids, classes.names, strict=True))
    assert by_id[1] == "person"
    assert by_id[18] == "dog"
    assert by_id[90] == "toothbrush"
    assert sorted(by_id) == list(range(1, 91))


def test_predict_dict_is_json_ready(full_result):
    d = full_result.to_dict()
    assert (d["height"], d["width"]) == (426, 640)
    assert len(d["detections"]) == len(full_result)
    first = d["detections"][0]
    assert set(first) == {"box", "score", "category_id", "class_name"}
    assert first["box"] == pytest.approx(full_result.boxes[0].tolist(), abs=1e-3)


def test_predict_pathlib_path_same_as_str(tv_model, strip_png, strip_result):
    _same(tv_model.predict(Path(strip_png)), strip_result)


def test_predict_rgb_array_same_as_file(tv_model, strip_rgb, strip_result):
    result = tv_model.predict(strip_rgb)
    _same(result, strip_result)
    assert result.source is None


def test_predict_bgr_array_same_as_file(tv_model, strip_rgb, strip_result):
    bgr = np.ascontiguousarray(strip_rgb[:, :, ::-1])
    _same(tv_model.predict(bgr, channels="BGR"), strip_result)


def test_predict_channels_matter(tv_model, strip_rgb, strip_result):
    """The channel order of an array is honoured: BGR pixels read as RGB give other results."""
    bgr = np.ascontiguousarray(strip_rgb[:, :, ::-1])
    other = tv_model.predict(bgr)  # wrongly declared RGB
    assert len(other) != len(strip_result) or not np.allclose(other.scores, strip_result.scores)


@pytest.fixture(scope="module")
def batch_results(tv_model, strip_png, strip_802_rgb) -> list[fasterrcnn.Detections]:
    """A list of two differently-sized images: 100 x 640 (network input 208 x 1333, 224 x 1344
    padded) and 80 x 424 (251 x 1333, 256 x 1344 padded), which never share a batch (images
    that do are tested in test_engine.py)."""
    assert strip_802_rgb.shape[:2] != cv2.imread(str(strip_png)).shape[:2]
    return tv_model.predict([str(strip_png), strip_802_rgb], batch_size=2)


def test_predict_list_returns_a_list(batch_results, tv_model, strip_png, strip_802_rgb):
    assert isinstance(batch_results, list) and len(batch_results) == 2
    first, second = batch_results
    assert first.source == str(strip_png) and second.source is None
    assert first.image_size == (100, 640) and second.image_size == (80, 424)
    _same(second, tv_model.predict(strip_802_rgb))


def test_predict_list_matches_single_calls(batch_results, strip_result):
    _same(batch_results[0], strip_result)


def test_return_proposals(tv_model, strip_png, strip_result):
    result = tv_model.predict(strip_png, return_proposals=True)
    _same(result, strip_result)  # asking for proposals does not change detections
    proposals, scores = result.proposals, result.proposal_scores
    assert proposals is not None and scores is not None
    p = len(proposals)
    assert p > 0 and proposals.shape == (p, 4) and scores.shape == (p,)
    net_h, net_w = resized_size(100, 640, tv_model.config.input)
    assert (net_h, net_w) == (208, 1333)
    assert np.all(proposals[:, :2] >= 0)
    assert np.all(proposals[:, 2] <= net_w) and np.all(proposals[:, 3] <= net_h)
    # Network-input frame, not the original image: some proposals reach past 640 pixels.
    assert proposals[:, 2].max() > 640
    assert np.all((scores > 0) & (scores < 1))


def test_model_is_a_module(tv_model):
    assert isinstance(tv_model, nn.Module)
    assert not tv_model.training
    assert tv_model.to("cpu") is tv_model
    assert tv_model.eval() is tv_model
    assert tv_model.device == torch.device("cpu")


def test_native_state_dict_round_trip(tv_model, strip_rgb, strip_result):
    state = tv_model.state_dict()
    copy = fasterrcnn.create_model(TORCHVISION, weights=state)
    for key, value in copy.state_dict().items():
        assert torch.equal(value, state[key]), key
    _same(copy.predict(strip_rgb), strip_result)


# --------------------------------------------------------------------------- image decoding


def _ramp(h: int = 6, w: int = 9) -> np.ndarray:
    return (np.arange(h * w, dtype=np.int64).reshape(h, w) * 4 % 256).astype(np.uint8)


def test_read_grayscale_png(tmp_path):
    gray = _ramp()
    path = tmp_path / "gray.png"
    assert cv2.imwrite(str(path), gray)
    image = fasterrcnn.read_image(path)
    assert image.shape == (6, 9, 3) and image.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(image[:, :, c], gray)


def test_read_rgba_png_drops_alpha(tmp_path):
    b, g, r = _ramp(), 255 - _ramp(), np.full((6, 9), 77, np.uint8)
    alpha = np.zeros((6, 9), np.uint8)
    alpha[:, ::2] = 255
    path = tmp_path / "rgba.png"
    assert cv2.imwrite(str(path), np.dstack([b, g, r, alpha]))
    image = fasterrcnn.read_image(path)
    assert image.shape == (6, 9, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, np.dstack([r, g, b]))


def test_read_16bit_png_scales_to_8bit(tmp_path):
    k = _ramp()
    bgr16 = np.dstack([k, k // 2, 255 - k]).astype(np.uint16) * 257
    bgr16[0, 0] = 65535
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), bgr16)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    image = fasterrcnn.read_image(path)
    assert image.shape == (6, 9, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [255, 255, 255]
    expected = (bgr16[:, :, ::-1] // 257).astype(np.uint8)
    np.testing.assert_array_equal(image, expected)


def test_read_image_bgr_channels():
    rgb = fasterrcnn.read_image(JPEG_139)
    bgr = fasterrcnn.read_image(JPEG_139, channels="BGR")
    np.testing.assert_array_equal(bgr, rgb[:, :, ::-1])
    np.testing.assert_array_equal(bgr, cv2.imread(str(JPEG_139)))


# --------------------------------------------------------------------------- bad images


def _bad_image(kind: str, tmp_path: Path) -> Path:
    if kind == "missing":
        return tmp_path / "missing.jpg"
    path = tmp_path / f"{kind}.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "truncated":
        data = JPEG_139.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "directory":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("missing", "no such file"),
        ("empty", "empty"),
        ("text", "not a readable image"),
        ("truncated", "truncated"),
        ("directory", "directory"),
    ],
)
def test_bad_image_file(tv_model, tmp_path, kind, expected):
    path = _bad_image(kind, tmp_path)
    for call in (fasterrcnn.read_image, tv_model.predict):
        with pytest.raises(fasterrcnn.ImageError) as info:
            call(path)
        message = str(info.value)
        assert expected in message
        assert path.name in message
        assert "\n" not in message


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.zeros((20, 30), np.uint8), "shape"),
        (np.zeros((20, 30, 4), np.uint8), "shape"),
        (np.zeros((3, 20, 30), np.uint8), "shape"),
        (np.zeros((20, 30, 3), np.float32), "dtype"),
        (np.zeros((20, 30, 3), np.uint16), "dtype"),
        (np.zeros((0, 30, 3), np.uint8), "empty"),
    ],
    ids=["2d", "4-channel", "chw", "float32", "uint16", "zero-height"],
)
def test_bad_array(tv_model, array, expected):
    with pytest.raises(fasterrcnn.ImageError, match=expected):
        tv_model.predict(array)


def test_bad_item_in_list(tv_model, strip_rgb, tmp_path):
    with pytest.raises(fasterrcnn.ImageError, match="empty file"):
        tv_model.predict([strip_rgb, _bad_image("empty", tmp_path)])


# --------------------------------------------------------------------------- bad weights


def _checkpoint_error(weights) -> str:
    with pytest.raises(fasterrcnn.CheckpointError) as info:
        fasterrcnn.create_model(TORCHVISION, weights=weights)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_weights_random_bytes(tmp_path):
    path = tmp_path / "random.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    message = _checkpoint_error(path)
    assert str(path) in message and "not a checkpoint" in message


def test_weights_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    message = _checkpoint_error(path)
    assert str(path) in message and "empty" in message


def test_weights_missing_file(tmp_path):
    path = tmp_path / "absent.pth"
    message = _checkpoint_error(path)
    assert str(path) in message and "no such file" in message


def test_weights_missing_key(tv_state_dict):
    key = "backbone.body.layer4.2.conv3.weight"  # the same name in both namespaces
    state = dict(tv_state_dict)
    del state[key]
    message = _checkpoint_error(state)
    assert "missing" in message and key in message


def test_weights_unexpected_key(tv_state_dict):
    state = {**tv_state_dict, "roi_heads.box_head.fc8.weight": torch.zeros(4, 4)}
    message = _checkpoint_error(state)
    assert "unexpected" in message and "roi_heads.box_head.fc8.weight" in message


def test_weights_wrong_shape(tv_state_dict):
    key = "rpn.head.cls_logits.weight"
    state = {**tv_state_dict, key: torch.zeros(4, 256, 1, 1)}
    message = _checkpoint_error(state)
    assert "shape" in message and key in message


def test_weights_megengine_names(tv_state_dict):
    renames = {
        "rpn.head.conv.0.0.": "rpn.rpn_conv.",
        "rpn.head.conv.": "rpn.rpn_conv.",
        "rpn.head.cls_logits.": "rpn.rpn_cls_score.",
        "rpn.head.bbox_pred.": "rpn.rpn_bbox_offsets.",
    }

    def rename(key: str) -> str:
        for old, new in renames.items():
            if key.startswith(old):
                return new + key[len(old) :]
        return key

    state = {rename(k): v for k, v in tv_state_dict.items()}
    assert "rpn.rpn_cls_score.weight" in state
    message = _checkpoint_error(state)
    assert "MegEngine" in message and "torchvision" in message


def test_weights_unknown_names():
    message = _checkpoint_error({"foo.weight": torch.zeros(2), "bar.bias": torch.zeros(2)})
    assert "foo.weight" in message


def _corrupt(kind: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict that is right except for one thing, loaded after all good keys."""
    state = dict(state)
    if kind == "missing":
        del state["roi_heads.box_predictor.bbox_pred.bias"]
    elif kind == "unexpected":
        state["roi_heads.box_head.fc8.weight"] = torch.zeros(4, 4)
    elif kind == "shape":
        state["roi_heads.box_predictor.bbox_pred.bias"] = torch.zeros(7)
    elif kind == "not-a-tensor":
        state["roi_heads.box_predictor.bbox_pred.bias"] = "zeros"
    return state


@pytest.mark.parametrize("kind", ["missing", "unexpected", "shape", "not-a-tensor"])
def test_failed_load_leaves_model_untouched(tv_state_dict, kind):
    model = fasterrcnn.FasterRCNN(fasterrcnn.get_preset(TORCHVISION).config).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(fasterrcnn.CheckpointError):
        load_into(model, _corrupt(kind, tv_state_dict), "torchvision")
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert not changed, f"half-loaded: {len(changed)} tensors changed, e.g. {changed[:3]}"


# --------------------------------------------------------------------------- checkpoint files


def _save(fmt: str, state: dict[str, torch.Tensor], directory: Path) -> Path:
    if fmt == "safetensors":
        path = directory / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "pth":
        path = directory / "weights.pth"
        torch.save(state, path)
    else:
        path = directory / f"wrapped_{fmt}.pth"
        torch.save({fmt: state, "epoch": 12}, path)
    return path


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "model", "state_dict"])
def test_checkpoint_formats(fmt, tv_state_dict, tv_model, strip_rgb, strip_result, tmp_path):
    path = _save(fmt, tv_state_dict, tmp_path)
    model = fasterrcnn.create_model(TORCHVISION, weights=path)
    reference = tv_model.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    result = model.predict(strip_rgb)
    assert len(result) > 0 and len(strip_result) > 0
    np.testing.assert_array_equal(result.boxes[0], strip_result.boxes[0])
