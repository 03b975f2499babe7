"""The native checkpoint format: a safetensors file whose metadata holds the model's own
configuration (class table included), so that the file alone rebuilds the model.

Models are the R18 preset with a custom 3-class table, freshly initialized (no download) and
run at a short side of 320 pixels to keep this file fast.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.models import RES18, custom_config
from helpers.seeded import DATA
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import fasterrcnn
from fasterrcnn.cli import main
from fasterrcnn.config_json import (
    ConfigError,
    config_differences,
    config_from_dict,
    config_from_json,
    config_to_dict,
)
from fasterrcnn.zoo import (
    CheckpointError,
    NativeCheckpoint,
    create_model,
    get_preset,
    is_native,
    read_native,
    save_native,
)
from fasterrcnn.zoo import native as native_module
from fasterrcnn.zoo.checkpoints import read_state_dict
from fasterrcnn.zoo.presets import DEFAULT_MODEL, PRESETS

IMAGES = DATA / "coco" / "val2017"
ANNOTATIONS = DATA / "coco" / "instances_val2017.json"
IMAGE = IMAGES / "000000000139.jpg"


@pytest.fixture(scope="module")
def pet_result(pet_model):
    return pet_model.predict(str(IMAGE), score_threshold=0.0)


@pytest.fixture(scope="module")
def plain_file(tmp_path_factory) -> Path:
    """The R18 preset's (COCO-80) state dict as a safetensors file without metadata."""
    torch.manual_seed(1)
    model = fasterrcnn.Detector(get_preset(RES18).config)
    path = tmp_path_factory.mktemp("plain") / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def one_line(err: BaseException) -> str:
    message = str(err)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------- config <-> JSON


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trip_every_preset(name):
    config = PRESETS[name].config
    text = json.dumps(config_to_dict(config))  # strictly JSON-ready data
    back = config_from_dict(json.loads(text))
    # Equality also checks types: a list never equals the tuple it came from.
    assert back == config
    assert config_from_json(text) == config
    assert config_differences(back, config) == []


def test_config_dict_by_hand():
    data = config_to_dict(get_preset(DEFAULT_MODEL).config)
    assert data["rpn"]["nms_threshold"] == 0.7
    assert data["rpn"]["objectness"] == "softmax2"
    assert data["anchors"]["sizes"] == [32, 64, 128, 256, 512]
    assert data["input"]["mean"] == [103.530, 116.280, 123.675]
    assert data["postprocess"]["min_size"] is None
    assert data["box_head"]["box_coder"]["weights"] == [10.0, 10.0, 5.0, 5.0]
    assert data["classes"]["names"][0] == "person" and len(data["classes"]["category_ids"]) == 80
    # Field order of the dataclasses, so that the JSON reads like config.py.
    assert list(data)[:3] == ["input", "classes", "body"]


def test_config_differences_names_the_fields():
    config = custom_config()
    assert config_differences(config, get_preset(RES18).config) == [
        "input.short_side",
        "input.max_side",
        "classes.category_ids",
        "classes.names",
        "rpn.pre_nms_top_n_test",
        "rpn.post_nms_top_n_test",
        "box_head.num_classes",
    ]


def _edit(path: str, value: object) -> dict:
    """The default preset's dict with ``path`` ("a.b.c") set to ``value`` (or deleted when
    ``value`` is the DELETE marker)."""
    data = config_to_dict(get_preset(DEFAULT_MODEL).config)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("rpn.nms_threshold", "x", 'config.rpn.nms_threshold: expected a number, got "x"'),
        ("rpn.nms_threshold", None, "config.rpn.nms_threshold: expected a number, got null"),
        ("rpn.nms_threshold", DELETE, 'config.rpn: missing field "nms_threshold" of RPNConfig'),
        ("body.colour", "red", 'config.body: unknown field "colour" in BodyConfig'),
        ("body.depth", 19, "config.body.depth: expected one of 18, 34, 50, 101, 152, got 19"),
        ("body.depth", 50.0, "config.body.depth: expected one of 18, 34, 50, 101, 152, got 50.0"),
        ("rpn.objectness", "tanh", 'expected one of "sigmoid", "softmax2", got "tanh"'),
        ("anchors.sizes", [32, "64"], 'config.anchors.sizes[1]: expected an integer, got "64"'),
        ("anchors.sizes", 32, "config.anchors.sizes: expected a list, got 32"),
        ("input.mean", [1.0, 2.0], "config.input.mean: expected a list of 3 items, got 2"),
        ("rpn.nms_plus_one", 1, "config.rpn.nms_plus_one: expected true or false, got 1"),
        ("box_head.num_classes", True, "config.box_head.num_classes: expected an integer, got true"),
        ("box_head.num_classes", 80.0, "config.box_head.num_classes: expected an integer, got 80.0"),
        ("postprocess.min_size", "small", 'config.postprocess.min_size: expected a number, got "small"'),
        ("rpn.box_coder", [1, 2], "config.rpn.box_coder: expected an object (BoxCoderConfig)"),
        ("classes.names", ["person"], "config.classes: ClassTable: category_ids and names differ"),
        ("box_head.num_classes", 3, "config: class table has 80 classes, box head 3"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(path, value, message):
    with pytest.raises(ConfigError) as info:
        config_from_dict(_edit(path, value))
    assert message in one_line(info.value)


def test_config_accepts_null_where_allowed_and_ints_for_floats():
    data = _edit("postprocess.min_size", 0.5)
    data["rpn"]["nms_threshold"] = 1  # a JSON integer is a number
    config = config_from_dict(data)
    assert config.postprocess.min_size == 0.5
    assert config.rpn.nms_threshold == 1.0 and isinstance(config.rpn.nms_threshold, float)


def test_config_errors_other_inputs():
    with pytest.raises(ConfigError, match=r"^config: expected an object \(ModelConfig\), got \[\]"):
        config_from_dict([])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^config: not valid JSON"):
        config_from_json("{")
    with pytest.raises(ConfigError, match=r"^config: expected a ModelConfig, got dict"):
        config_to_dict({})  # type: ignore[arg-type]
    base = custom_config()
    bad = dataclasses.replace(base, fpn=dataclasses.replace(base.fpn, out_channels="256"))
    with pytest.raises(
        ConfigError, match=r'^config\.fpn\.out_channels: expected an integer, got "256"'
    ):
        config_to_dict(bad)


# --------------------------------------------------------------------------- save / read


def test_save_read_round_trip(pet_model, pet_file):
    checkpoint = read_native(pet_file)
    assert checkpoint.config == custom_config()
    assert checkpoint.preset == RES18
    assert checkpoint.metadata == {"iteration": "90000"}
    reference = pet_model.state_dict()
    assert sorted(checkpoint.state_dict) == sorted(reference)  # (safetensors sorts them)
    for key, value in reference.items():
        saved = checkpoint.state_dict[key]
        assert saved.dtype == value.dtype and torch.equal(saved, value), key

    # The file's metadata, as any safetensors reader sees it.
    with safe_open(str(pet_file), framework="pt") as file:
        header = file.metadata()
    assert header["format"] == "fasterrcnn" and header["format_version"] == "1"
    assert header["preset"] == RES18 and header["iteration"] == "90000"
    config = json.loads(header["config"])
    assert config["classes"] == {"category_ids": [1, 2, 3], "names": ["cat", "dog", "bird"]}
    assert config["body"]["depth"] == 18 and config["box_head"]["num_classes"] == 3
    assert is_native(pet_file)


def test_save_state_dict_without_preset(pet_model, tmp_path):
    path = tmp_path / "weights.safetensors"
    save_native(path, pet_model.state_dict(), custom_config())
    checkpoint = read_native(path)
    assert checkpoint.preset is None and checkpoint.metadata == {}
    with safe_open(str(path), framework="pt") as file:
        assert file.metadata()["preset"] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]


def test_recognised_by_content_not_name(pet_model, pet_file, tmp_path):
    renamed = tmp_path / "model_final.bin"
    renamed.write_bytes(pet_file.read_bytes())
    assert is_native(renamed)
    assert read_native(renamed).config == custom_config()
    state_dict = read_state_dict(renamed)  # as a plain state dict too
    for key, value in pet_model.state_dict().items():
        assert torch.equal(state_dict[key], value), key


def test_is_native_false_for_everything_else(plain_file, tmp_path):
    torch.save({"a": torch.zeros(2)}, tmp_path / "weights.pth")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    assert not is_native(plain_file)
    assert not is_native(tmp_path / "weights.pth")
    assert not is_native(tmp_path / "garbage.safetensors")
    assert not is_native(tmp_path / "absent.safetensors")


def test_save_rejects_state_dict_of_another_architecture(plain_file, tmp_path):
    """A COCO-80 state dict saved with the 3-class configuration: refused, nothing written."""
    state_dict = read_state_dict(plain_file)
    path = tmp_path / "wrong.safetensors"
    with pytest.raises(CheckpointError) as info:
        save_native(path, state_dict, custom_config())
    message = one_line(info.value)
    assert "does not fit the configuration" in message and "4 classes" in message
    assert "4 shape mismatches: roi_heads.predictor.bbox_pred.bias (320,) vs (12,)" in message
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_reserved_or_non_string_metadata(pet_model, tmp_path):
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="'config' is reserved"):
        save_native(path, pet_model, custom_config(), metadata={"config": "{}"})
    with pytest.raises(TypeError, match="strings to strings"):
        save_native(path, pet_model, custom_config(), metadata={"iteration": 5})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(pet_model, pet_file, tmp_path, monkeypatch):
    """A failure mid-write leaves neither a file under the final name nor a temporary file,
    and an existing file under that name untouched."""
    real_save_file = native_module.save_file
    written: list[Path] = []

    def fail_midway(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        written.append(Path(filename))
        raise OSError("No space left on device")

    monkeypatch.setattr(native_module, "save_file", fail_midway)
    path = tmp_path / "model.safetensors"
    with pytest.raises(OSError, match="No space left"):
        save_native(path, pet_model, custom_config())
    assert written and written[0].parent == tmp_path and written[0] != path
    assert list(tmp_path.iterdir()) == []

    # Over an existing checkpoint: the old file stays as it was.
    path.write_bytes(pet_file.read_bytes())
    with pytest.raises(OSError, match="No space left"):
        save_native(path, pet_model, custom_config())
    assert sorted(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == pet_file.read_bytes()

    # safetensors' own error type for I/O failures becomes an OSError naming the file.
    def safetensors_fails(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: disk quota exceeded")

    monkeypatch.setattr(native_module, "save_file", safetensors_fails)
    with pytest.raises(OSError, match=f"^save_native: cannot write {path} .*disk quota"):
        save_native(path, pet_model, custom_config())
    assert sorted(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == pet_file.read_bytes()

    monkeypatch.setattr(native_module, "save_file", real_save_file)
    save_native(path, pet_model, custom_config(), preset="")
    assert sorted(tmp_path.iterdir()) == [path] and read_native(path).preset is None


def test_save_into_missing_folder_or_onto_a_folder(pet_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="save_native: no such directory"):
        save_native(tmp_path / "absent" / "m.safetensors", pet_model, custom_config())
    with pytest.raises(IsADirectoryError, match=f"save_native: {tmp_path} is a directory"):
        save_native(tmp_path, pet_model, custom_config())
    assert list(tmp_path.iterdir()) == [] and list(tmp_path.parent.glob(".*.tmp")) == []


# --------------------------------------------------------------------------- bad files


def test_corrupt_files(pet_file, tmp_path):
    data = pet_file.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 100)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    cases = {
        truncated: "not a safetensors file",
        garbage: "not a safetensors file",
        empty: "empty file",
        tmp_path / "absent.safetensors": "no such file",
    }
    for path, reason in cases.items():
        with pytest.raises(CheckpointError) as info:
            read_native(path)
        assert one_line(info.value).startswith(f"{path}: {reason}")
        with pytest.raises(CheckpointError) as info:
            create_model(weights=path)
        assert one_line(info.value).startswith(f"{path}: {reason}")
        # With a preset named, the file is read as a plain checkpoint: the same error.
        with pytest.raises(CheckpointError, match=reason):
            create_model(RES18, weights=path)


def _native_with_header(pet_model, path: Path, **changes: str) -> Path:
    header = {
        "format": "fasterrcnn",
        "format_version": "1",
        "config": json.dumps(config_to_dict(custom_config())),
        "preset": "",
        **changes,
    }
    tensors = {k: v.contiguous() for k, v in pet_model.state_dict().items()}
    save_file(tensors, str(path), metadata=header)
    return path


def test_bad_metadata(pet_model, tmp_path):
    newer = _native_with_header(pet_model, tmp_path / "v2.safetensors", format_version="2")
    with pytest.raises(CheckpointError, match="format version '2'; this version of fasterrcnn"):
        read_native(newer)
    assert is_native(newer)  # ours, but newer than this reader

    config = config_to_dict(custom_config())
    config["rpn"]["nms_threshold"] = "high"
    bad = _native_with_header(pet_model, tmp_path / "bad.safetensors", config=json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        create_model(weights=bad)
    assert one_line(info.value) == (
        f'{bad}: bad model configuration: config.rpn.nms_threshold: expected a number, got "high"'
    )


def test_native_file_whose_tensors_miss_its_config(pet_model, tmp_path):
    """Written around save_native's check: loading is strict and names the file."""
    config = config_to_dict(custom_config())
    config["box_head"]["num_classes"] = 4
    config["classes"] = {"category_ids": [1, 2, 3, 4], "names": ["cat", "dog", "bird", "fish"]}
    path = _native_with_header(pet_model, tmp_path / "m.safetensors", config=json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        create_model(weights=path)
    message = one_line(info.value)
    assert message.startswith(f"{path}: fasterrcnn checkpoint of another architecture")
    assert "4 classes" in message and "5 classes" in message


def test_plain_safetensors_needs_a_preset(plain_file):
    with pytest.raises(CheckpointError) as info:
        create_model(weights=plain_file)
    assert one_line(info.value).startswith(f"{plain_file}: has no fasterrcnn metadata")
    with pytest.raises(CheckpointError, match="has no fasterrcnn metadata"):
        read_native(plain_file)
    # Named, it is the plain state dict it always was.
    model = create_model(RES18, weights=plain_file)
    reference = read_state_dict(plain_file)
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_create_model_needs_a_name_or_native_weights(tmp_path):
    with pytest.raises(fasterrcnn.UnknownModelError, match="name a preset"):
        create_model()
    with pytest.raises(fasterrcnn.UnknownModelError, match="name a preset"):
        create_model(weights={"a": torch.zeros(1)})
    torch.save({"a": torch.zeros(1)}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        create_model(weights=tmp_path / "w.pth")


# --------------------------------------------------------------------------- create_model


def test_create_model_from_native_file(pet_file, pet_result):
    model = create_model(weights=pet_file)
    assert model.config == custom_config() and not model.training
    result = model.predict(str(IMAGE), score_threshold=0.0)
    assert len(result) == len(pet_result) > 0
    assert set(result.class_names) <= {"cat", "dog", "bird"}
    assert result.class_names == pet_result.class_names
    torch.testing.assert_close(
        torch.from_numpy(result.boxes), torch.from_numpy(pet_result.boxes), rtol=0, atol=0
    )
    assert (result.scores == pet_result.scores).all()
    assert (result.category_ids == pet_result.category_ids).all()


def test_create_model_from_checkpoint_in_memory(pet_file, pet_model):
    checkpoint = read_native(pet_file)
    model = create_model(weights=checkpoint)
    assert isinstance(checkpoint, NativeCheckpoint) and model.config == checkpoint.config
    for key, value in pet_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_named_preset_of_another_architecture_the_file_wins(pet_file, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("fasterrcnn"), "propagate", True)  # the CLI clears it
    with caplog.at_level(logging.WARNING, logger="fasterrcnn"):
        model = create_model(DEFAULT_MODEL, weights=pet_file)
    assert model.config == custom_config()
    assert model.backbone.body.layer1[0].conv1.weight.shape == (64, 64, 3, 3)  # R18, not R50
    assert model.roi_heads.predictor.cls_score.weight.shape[0] == 4
    # One warning (a handler an earlier test left on the logger may capture it twice).
    [message] = {r.getMessage() for r in caplog.records if r.name == "fasterrcnn"}
    assert message.startswith(f"{pet_file} holds its own model configuration")
    assert DEFAULT_MODEL in message and "classes.names" in message and "body.depth" in message


def test_named_preset_of_the_same_config_no_warning(plain_file, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("fasterrcnn"), "propagate", True)
    path = tmp_path / "coco.safetensors"
    save_native(path, read_state_dict(plain_file), get_preset(RES18).config, preset=RES18)
    with caplog.at_level(logging.WARNING, logger="fasterrcnn"):
        model = create_model(RES18, weights=path)
    assert not [r for r in caplog.records if r.name == "fasterrcnn"]
    assert model.config == get_preset(RES18).config


# --------------------------------------------------------------------------- command line


def test_cli_detect_native_without_model(pet_file, pet_result, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(
        ["detect", str(IMAGE), "--weights", str(pet_file), "--out", str(out),
         "--score-threshold", "0", "--no-draw"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = json.loads((out / f"{IMAGE.stem}.json").read_text())
    names = [d["class_name"] for d in data["detections"]]
    assert names == pet_result.class_names and set(names) <= {"cat", "dog", "bird"}
    assert [d["category_id"] for d in data["detections"]] == pet_result.category_ids.tolist()
    assert [d["box"] for d in data["detections"]] == [
        [round(float(v), 3) for v in box] for box in pet_result.boxes
    ]


def test_cli_eval_native_without_model(pet_file, tmp_path, capsys):
    """The file's class table is matched to COCO's categories by name (cat 17, dog 18,
    bird 16)."""
    results = tmp_path / "results.json"
    status = main(
        ["eval", "--images", str(IMAGES), "--annotations", str(ANNOTATIONS), "--weights",
         str(pet_file), "--max-images", "2", "--results", str(results)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    found = json.loads(results.read_text())
    assert found and {r["category_id"] for r in found} <= {16, 17, 18}
    assert "match no model class" in captured.err


def test_cli_plain_safetensors_without_model(plain_file, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fasterrcnn.cli", "detect", str(IMAGE), "--weights",
         str(plain_file), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        f"fasterrcnn: error: {plain_file}: has no fasterrcnn metadata; name the preset with --model"
    ]
    assert not (tmp_path / "out").exists()


def test_cli_corrupt_native_file(pet_file, tmp_path, capsys):
    truncated = tmp_path / "model_final.safetensors"
    truncated.write_bytes(pet_file.read_bytes()[:-100])
    status = main(["detect", str(IMAGE), "--weights", str(truncated), "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 2
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        f"fasterrcnn: error: {truncated}: not a safetensors file"
    )


def test_cli_named_preset_with_native_file_notes_it(pet_file, tmp_path, capsys):
    status = main(
        ["detect", str(IMAGE), "--model", RES18, "--weights", str(pet_file), "--out",
         str(tmp_path / "out"), "--no-draw"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert f"fasterrcnn: {pet_file} holds its own model configuration" in captured.err
    assert "input.short_side, input.max_side, classes.category_ids, classes.names" in captured.err
