"""Loading MegEngine checkpoints: pickle formats, layouts, the restricted unpickler, errors."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from helpers.megengine_pickle import globals_in, megengine_pickle_bytes
from helpers.seeded import DATA, load_shapes, numpy_seeded

import fasterrcnn
from fasterrcnn.zoo.checkpoints import CheckpointError, load_into, safe_unpickle

SEED = "faster_rcnn_res50_coco_1x_800size"
RES18 = "faster_rcnn_res18_coco_3x_800size"


@pytest.fixture(scope="module")
def v0_weights() -> dict[str, np.ndarray]:
    return numpy_seeded(load_shapes(DATA / "megengine_v0" / "megengine_v0_state_dict_shapes.json"))


@pytest.fixture(scope="module")
def res18_weights() -> dict[str, np.ndarray]:
    folder = DATA / "megengine_variants" / "faster_rcnn_res18_coco_3x_800size"
    return numpy_seeded(
        load_shapes(folder / "faster_rcnn_res18_coco_3x_800size_state_dict_shapes.json")
    )


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_loaded(model: fasterrcnn.FasterRCNN, weights: dict[str, np.ndarray]) -> None:
    state = model.state_dict()
    np.testing.assert_array_equal(
        state["backbone.body.conv1.weight"].numpy(), weights["backbone.bottom_up.conv1.weight"]
    )
    running_var = next(k for k in weights if k.endswith("layer1.0.bn1.running_var"))
    np.testing.assert_array_equal(
        state["backbone.body.layer1.0.bn1.running_var"].numpy(), weights[running_var].reshape(-1)
    )


@pytest.mark.parametrize("protocol", [4, 5])
def test_published_pickle_formats_load(tmp_path, v0_weights, protocol):
    data = megengine_pickle_bytes(v0_weights, protocol=protocol)
    names = globals_in(data)
    assert all(not n.startswith("numpy._core") for n in names)  # numpy 1.x names, as published
    assert ("numpy.core.multiarray._reconstruct" in names) == (protocol == 4)
    assert ("numpy.core.numeric._frombuffer" in names) == (protocol == 5)
    path = tmp_path / "weights.pkl"
    path.write_bytes(data)
    model = fasterrcnn.create_model(SEED, weights=path)
    _assert_loaded(model, v0_weights)
    # The 0.x file keeps the ImageNet classifier; it is dropped by the key map.
    assert "backbone.bottom_up.fc.weight" in v0_weights
    assert not any(".fc." in k for k in model.state_dict())


def test_numpy2_names_and_training_wrapper_load(tmp_path, res18_weights):
    path = tmp_path / "epoch_36.pkl"
    with path.open("wb") as f:  # the installed numpy writes numpy._core names
        pickle.dump({"epoch": 36, "state_dict": res18_weights}, f, protocol=4)
    assert any(n.startswith("numpy._core") for n in globals_in(path.read_bytes()))
    _assert_loaded(fasterrcnn.create_model(RES18, weights=path), res18_weights)


def test_norm_tensors_in_either_layout(res18_weights):
    as_4d = {
        k: (v.reshape(1, -1, 1, 1) if k.startswith("backbone.bottom_up") and v.ndim == 1 else v)
        for k, v in res18_weights.items()
    }
    assert as_4d["backbone.bottom_up.bn1.weight"].shape == (1, 64, 1, 1)
    _assert_loaded(fasterrcnn.create_model(RES18, weights=as_4d), res18_weights)


def test_grouped_kernels_5d():
    folder = DATA / "megengine_variants" / "faster_rcnn_resx101_coco_2x_800size"
    shapes = load_shapes(folder / "faster_rcnn_resx101_coco_2x_800size_state_dict_shapes.json")
    assert shapes["backbone.bottom_up.layer1.0.conv2.weight"] == [32, 8, 8, 3, 3]
    weights = numpy_seeded(shapes, grouped_as_4d=True)
    model = fasterrcnn.create_model("faster_rcnn_resx101_coco_2x_800size_mge16", weights=weights)
    kernel = model.state_dict()["backbone.body.layer1.0.conv2.weight"]
    assert tuple(kernel.shape) == (256, 8, 3, 3)
    # Output channels [8g, 8g + 8) use weight[g].
    np.testing.assert_array_equal(
        kernel[8 * 5 : 8 * 6].numpy(), weights["backbone.bottom_up.layer1.0.conv2.weight"][5]
    )


def test_same_number_of_elements_is_not_enough(res18_weights):
    bad = dict(res18_weights)
    bad["rcnn.fc2.weight"] = bad["rcnn.fc2.weight"].reshape(512, 2048)  # not a MegEngine layout
    with pytest.raises(CheckpointError, match=r"rcnn\.fc2\.weight \(512, 2048\) vs \(1024, 1024\)"):
        fasterrcnn.create_model(RES18, weights=bad)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda sd: sd.pop("rpn.rpn_conv.weight"),
            r"missing 1 keys \(model names\): rpn\.head\.conv\.weight",
        ),
        (
            lambda sd: sd.update({"rpn.extra.weight": np.zeros(3, np.float32)}),
            r"unexpected 1 keys: rpn\.extra\.weight",
        ),
        (
            lambda sd: sd.update({"rcnn.pred_cls.bias": np.zeros(91, np.float32)}),
            r"rcnn\.pred_cls\.bias \(91,\) vs \(81,\)",
        ),
    ],
    ids=["missing", "unexpected", "shape"],
)
def test_strict_errors_name_the_keys_and_load_nothing(res18_weights, edit, pattern):
    model = fasterrcnn.create_model(RES18)
    before = _params(model)
    bad = dict(res18_weights)
    edit(bad)
    with pytest.raises(CheckpointError, match=pattern) as err:
        load_into(model, bad, "megengine")
    assert "\n" not in str(err.value)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_other_era_is_described(res18_weights, v0_weights):
    v1 = numpy_seeded(load_shapes(DATA / "megengine_v1" / "megengine_v1_state_dict_shapes.json"))
    with pytest.raises(CheckpointError) as err:
        fasterrcnn.create_model(SEED, weights=v1)
    message = str(err.value)
    assert "another architecture" in message
    assert "sigmoid RPN" in message and "2-class softmax RPN" in message
    with pytest.raises(CheckpointError, match=r"ResNet-18.*than the model.*ResNet-50"):
        fasterrcnn.create_model("faster_rcnn_res50_coco_3x_800size", weights=res18_weights)


def test_other_family_is_named(tv_state_dict, res18_weights):
    with pytest.raises(CheckpointError, match="looks like a torchvision checkpoint"):
        fasterrcnn.create_model(SEED, weights=tv_state_dict)
    with pytest.raises(CheckpointError, match="looks like a MegEngine checkpoint"):
        fasterrcnn.create_model("torchvision_fasterrcnn_resnet50_fpn", weights=res18_weights)


class _RunsCommand:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_forbidden_global_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(OrderedDict(weight=_RunsCommand(str(marker))), protocol=4)
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match=r"forbidden global (posix|os|nt)\.system"):
        fasterrcnn.create_model(SEED, weights=path)
    assert not marker.exists()
    # Also refused: any other callable, e.g. builtins.eval.
    with pytest.raises(CheckpointError, match=r"forbidden global builtins\.eval"):
        safe_unpickle(b"\x80\x04cbuiltins\neval\n\x8c\x041+1\x85R.")


def test_truncated_and_non_dict_payloads(tmp_path, res18_weights):
    data = megengine_pickle_bytes(res18_weights)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=r"truncated\.pkl: not a checkpoint file"):
        fasterrcnn.create_model(RES18, weights=truncated)
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([np.zeros(3, np.float32)]))
    with pytest.raises(CheckpointError, match="holds a list, not a dict"):
        fasterrcnn.create_model(RES18, weights=listed)


def test_cli_reports_forbidden_pickle_in_one_line(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"w": _RunsCommand(str(marker))}))
    image = DATA / "coco" / "val2017" / "000000000139.jpg"
    proc = subprocess.run(
        [sys.executable, "-m", "fasterrcnn.cli", "detect", str(image), "--weights", str(path),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "forbidden global" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_cli_detect_with_megengine_hub_file(tmp_path, res18_weights):
    path = tmp_path / "faster_rcnn_res18_coco_3x_800size_35dot7_a33835ca.pkl"
    path.write_bytes(megengine_pickle_bytes(res18_weights, protocol=5))
    image = DATA / "coco" / "val2017" / "000000000139.jpg"
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "fasterrcnn.cli", "detect", str(image), "--model", RES18,
         "--weights", str(path), "--out", str(out), "--score-threshold", "0.2"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "000000000139.json").read_text())
    # Under these weights the reference's top detections are COCO id 64 ("potted plant").
    assert result["detections"] and {d["class_name"] for d in result["detections"]} <= {
        "potted plant",
        "car",
    }
    ref = np.load(DATA / "megengine_variants" / RES18 / "000000000139.npz")
    top = result["detections"][0]
    assert top["score"] == pytest.approx(float(ref["dets"][0, 4]), abs=1e-3)
    assert top["category_id"] == int(ref["category_ids"][0])
    assert top["box"] == pytest.approx(ref["dets"][0, :4].tolist(), abs=1e-2)
