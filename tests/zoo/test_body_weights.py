"""ImageNet initialisation of the body: real-format checkpoints written here (torchvision .pth,
MegEngine pickles, detector checkpoints of each family) with name-seeded values, loaded into
bodies of the presets' configurations; every tensor compared with its source, the loaded
body checked against a plain reference forward, and each bad input's one-line error."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.megengine_pickle import megengine_pickle_bytes
from helpers.seeded import DATA, load_shapes, numpy_seeded, torch_seeded

from fasterrcnn.config import BodyConfig, ModelConfig
from fasterrcnn.modeling.backbone import ResNet
from fasterrcnn.modeling.faster_rcnn import FasterRCNN
from fasterrcnn.modeling.targets import Targets
from fasterrcnn.zoo.body_weights import BodyLoadReport, describe_body, load_body_weights
from fasterrcnn.zoo.checkpoints import CheckpointError
from fasterrcnn.zoo.native import save_native
from fasterrcnn.zoo.presets import PRESETS

SEED = PRESETS["faster_rcnn_res50_coco_1x_800size"].config
R18_DETECTOR_SHAPES = (
    DATA
    / "megengine_variants"
    / "faster_rcnn_res18_coco_3x_800size"
    / "faster_rcnn_res18_coco_3x_800size_state_dict_shapes.json"
)


def body_config(depth: int, **changes: Any) -> BodyConfig:
    return replace(SEED.body, depth=depth, **changes)


def model_config(depth: int) -> ModelConfig:
    return replace(SEED, body=body_config(depth))


def snapshot(body: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in body.state_dict().items()}


def assert_unchanged(body: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = body.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


# ----------------------------------------------------------------------------------------
# Checkpoint writers: names derived from our body's, in each format's layout


def torchvision_shapes(body: ResNet) -> dict[str, list[int]]:
    """torchvision's ImageNet ResNet key set: the body's names with a ``num_batches_tracked``
    after each batch norm's statistics, then ``fc.weight`` and ``fc.bias``."""
    shapes: dict[str, list[int]] = {}
    for key, value in body.state_dict().items():
        shapes[key] = list(value.shape)
        if key.endswith(".running_var"):
            shapes[key.replace("running_var", "num_batches_tracked")] = []
    features = body.cfg.out_channels[-1]
    return {**shapes, "fc.weight": [1000, features], "fc.bias": [1000]}


def norm_prefixes(body: ResNet) -> set[str]:
    return {k[: -len(".running_mean")] for k in body.state_dict() if k.endswith(".running_mean")}


def megengine_shapes(body: ResNet) -> dict[str, list[int]]:
    """MegEngine's layout of the same names: every batch-norm tensor (1, C, 1, 1), grouped
    kernels (groups, out / groups, in / groups, kh, kw), and the classifier."""
    norms = norm_prefixes(body)
    shapes: dict[str, list[int]] = {}
    for key, value in body.state_dict().items():
        shape = list(value.shape)
        prefix = key.rsplit(".", 1)[0]
        if prefix in norms:
            shape = [1, shape[0], 1, 1]
        elif key.endswith("conv2.weight") and body.cfg.groups > 1:
            groups = body.cfg.groups
            shape = [groups, shape[0] // groups, *shape[1:]]
        shapes[key] = shape
    features = body.cfg.out_channels[-1]
    return {**shapes, "fc.weight": [1000, features], "fc.bias": [1000]}


def assert_loaded(body: ResNet, source: dict[str, Any]) -> None:
    """Every body tensor equals its source tensor (viewed in the body's shape)."""
    for key, value in body.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        expected = torch.as_tensor(np.asarray(source[key])).reshape(value.shape)
        assert torch.equal(value, expected.to(value.dtype)), key


@pytest.fixture(scope="module")
def r18() -> dict[str, Any]:
    body = ResNet(body_config(18))
    return {
        "torchvision": torch_seeded(torchvision_shapes(body)),
        "megengine": numpy_seeded(megengine_shapes(body)),
    }


@pytest.fixture(scope="module")
def r50() -> dict[str, Any]:
    body = ResNet(body_config(50))
    return {
        "torchvision": torch_seeded(torchvision_shapes(body)),
        "megengine": numpy_seeded(megengine_shapes(body)),
    }


# ----------------------------------------------------------------------------------------
# Good checkpoints


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_pth(depth, r18, r50, tmp_path):
    source = (r18 if depth == 18 else r50)["torchvision"]
    path = tmp_path / f"resnet{depth}-seeded.pth"
    torch.save(source, path)
    body = ResNet(body_config(depth))
    report = load_body_weights(body, path)
    assert_loaded(body, source)
    counters = [k for k in source if k.endswith("num_batches_tracked")]
    assert len(counters) == (20 if depth == 18 else 53)  # one per batch norm
    assert report.tensors_loaded == len(source) - len(counters) - 2
    assert set(report.dropped) == {"fc.weight", "fc.bias", *counters}
    assert report.architecture == (
        "ResNet-18 (basic blocks)" if depth == 18 else "ResNet-50 (bottleneck blocks)"
    )
    assert report.checkpoint_format == "PyTorch ImageNet classifier (torchvision names)"
    assert report.source == str(path)
    assert f"{report.tensors_loaded} tensors loaded" in report.line()
    assert f"{len(counters)} batch-norm counters dropped" in report.line()


def test_legacy_torch_save_and_data_parallel(r18, tmp_path):
    source = {f"module.{k}": v for k, v in r18["torchvision"].items()}
    path = tmp_path / "resnet18-legacy.pth"
    torch.save(source, path, _use_new_zipfile_serialization=False)
    body = ResNet(body_config(18))
    report = load_body_weights(body, path)
    assert_loaded(body, r18["torchvision"])
    assert report.checkpoint_format.endswith("DataParallel 'module.' prefix stripped")


@pytest.mark.parametrize("depth", [18, 50])
def test_megengine_pickle(depth, r18, r50, tmp_path):
    source = (r18 if depth == 18 else r50)["megengine"]
    path = tmp_path / "resnet_fbaug_seeded.pkl"
    # A training checkpoint wraps the weights; hub files are the bare dict (protocol 4 or 5).
    if depth == 50:
        path.write_bytes(megengine_pickle_bytes({"epoch": np.int64(90), "state_dict": source}))
    else:
        path.write_bytes(megengine_pickle_bytes(source, protocol=5))
    body = ResNet(body_config(depth))
    report = load_body_weights(body, path)
    assert_loaded(body, source)
    assert body.bn1.running_var.shape == (64,)
    assert report.checkpoint_format == "MegEngine ImageNet classifier"
    assert report.dropped == ("fc.weight", "fc.bias")
    assert report.tensors_loaded == len(source) - 2


def test_megengine_resnext_grouped_kernels(tmp_path):
    cfg = body_config(50, groups=32, width_per_group=4)
    body = ResNet(cfg)
    shapes = megengine_shapes(body)
    assert shapes["layer1.0.conv2.weight"] == [32, 4, 4, 3, 3]
    source = numpy_seeded(shapes)
    path = tmp_path / "resnext50_32x4d.pkl"
    path.write_bytes(megengine_pickle_bytes(source))
    report = load_body_weights(body, path)
    assert_loaded(body, source)
    assert report.architecture == "ResNeXt-50 32x4d (bottleneck blocks)"
    # Kernel of group g, output o of the group, is output channel g * (out / groups) + o.
    assert torch.equal(
        body.layer1[0].conv2.weight[4 * 5 + 3],
        torch.from_numpy(source["layer1.0.conv2.weight"][5, 3]),
    )


def test_state_dict_mapping(r18):
    body = ResNet(body_config(18))
    report = load_body_weights(body, r18["torchvision"])
    assert_loaded(body, r18["torchvision"])
    assert report.source == "state dict"


def test_torchvision_detector_checkpoint(tv_state_dict):
    body = ResNet(replace(PRESETS["torchvision_fasterrcnn_resnet50_fpn"].config.body))
    report = load_body_weights(body, tv_state_dict)
    body_keys = {k: v for k, v in tv_state_dict.items() if k.startswith("backbone.body.")}
    assert_loaded(body, {k[len("backbone.body.") :]: v for k, v in body_keys.items()})
    assert report.outside_body == len(tv_state_dict) - len(body_keys) > 0
    counters = [k for k in body_keys if k.endswith("num_batches_tracked")]
    assert report.tensors_loaded == len(body_keys) - len(counters) == 265
    assert "backbone.body." in report.checkpoint_format


def test_megengine_detector_checkpoint(tmp_path):
    source = numpy_seeded(load_shapes(R18_DETECTOR_SHAPES))
    path = tmp_path / "faster_rcnn_res18_seeded.pkl"
    path.write_bytes(megengine_pickle_bytes(source))
    body = ResNet(body_config(18))
    report = load_body_weights(body, path)
    prefix = "backbone.bottom_up."
    assert_loaded(body, {k[len(prefix) :]: v for k, v in source.items() if k.startswith(prefix)})
    assert report.checkpoint_format == "MegEngine detector checkpoint (backbone.bottom_up.*)"
    assert report.outside_body == sum(not k.startswith(prefix) for k in source)


def test_megengine_v0_detector_drops_its_classifier():
    # The 0.x seed keeps the ImageNet classifier and stores norm statistics (1, C, 1, 1).
    source = numpy_seeded(
        load_shapes(DATA / "megengine_v0" / "megengine_v0_state_dict_shapes.json")
    )
    body = ResNet(SEED.body)
    report = load_body_weights(body, source)
    prefix = "backbone.bottom_up."
    assert_loaded(body, {k[len(prefix) :]: v for k, v in source.items() if k.startswith(prefix)})
    assert report.dropped == ("fc.bias", "fc.weight")


def test_native_detector_checkpoint(tmp_path):
    config = model_config(18)
    detector = FasterRCNN(config)
    seeded = torch_seeded({k: list(v.shape) for k, v in detector.state_dict().items()})
    detector.load_state_dict(seeded)
    path = tmp_path / "native.safetensors"
    save_native(path, detector, config)
    body = ResNet(config.body)
    load_body_weights(body, path)
    assert_loaded(body, {k: v for k, v in detector.backbone.body.state_dict().items()})


def test_trainable_batch_norm_and_frozen_bodies_agree(r50):
    frozen, trainable = ResNet(body_config(50)), ResNet(body_config(50, norm="bn", freeze_at=0))
    load_body_weights(frozen, r50["torchvision"])
    before = {k: v.clone() for k, v in trainable.state_dict().items() if "num_batches" in k}
    load_body_weights(trainable, r50["torchvision"])
    assert_loaded(trainable, r50["torchvision"])
    # The counters stay the body's own.
    assert all(torch.equal(trainable.state_dict()[k], v) for k, v in before.items())
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(frozen(x), trainable.eval()(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------
# The loaded body computes the ImageNet network's features; the detector trains on them


def reference_resnet(
    state: dict[str, torch.Tensor], x: torch.Tensor, eps: float
) -> list[torch.Tensor]:
    """A ResNet forward written from the checkpoint alone (torchvision's layout: the stride in
    the 3x3 conv), with batch norm in inference form."""

    def bn(y: torch.Tensor, name: str) -> torch.Tensor:
        return F.batch_norm(
            y,
            state[f"{name}.running_mean"],
            state[f"{name}.running_var"],
            state[f"{name}.weight"],
            state[f"{name}.bias"],
            False,
            0.0,
            eps,
        )

    y = F.relu(bn(F.conv2d(x, state["conv1.weight"], stride=2, padding=3), "bn1"))
    y = F.max_pool2d(y, 3, 2, 1)
    outputs = []
    for stage in range(1, 5):
        block = 0
        while f"layer{stage}.{block}.conv1.weight" in state:
            name = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            bottleneck = f"{name}.conv3.weight" in state
            if bottleneck:
                out = F.relu(bn(F.conv2d(y, state[f"{name}.conv1.weight"]), f"{name}.bn1"))
                out = F.conv2d(out, state[f"{name}.conv2.weight"], stride=stride, padding=1)
                out = F.relu(bn(out, f"{name}.bn2"))
                out = bn(F.conv2d(out, state[f"{name}.conv3.weight"]), f"{name}.bn3")
            else:
                out = F.conv2d(y, state[f"{name}.conv1.weight"], stride=stride, padding=1)
                out = F.relu(bn(out, f"{name}.bn1"))
                out = bn(F.conv2d(out, state[f"{name}.conv2.weight"], padding=1), f"{name}.bn2")
            shortcut = y
            if f"{name}.downsample.0.weight" in state:
                shortcut = F.conv2d(y, state[f"{name}.downsample.0.weight"], stride=stride)
                shortcut = bn(shortcut, f"{name}.downsample.1")
            y = F.relu(out + shortcut)
            block += 1
        outputs.append(y)
    return outputs


def test_loaded_detector_matches_reference_and_trains(r18, tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(r18["torchvision"], path)
    config = model_config(18)
    # Fewer RoIs than the preset's 512 keep the training step quick; the body is the point.
    sampling = replace(config.box_head.sampling, batch_size_per_image=64)
    config = replace(config, box_head=replace(config.box_head, sampling=sampling))
    model = FasterRCNN(config)
    load_body_weights(model.backbone.body, path)
    images = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = model.backbone.body(images)
        expected = reference_resnet(r18["torchvision"], images, config.body.norm_eps)
    for got, want in zip(features, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    model.train()
    targets = [Targets(torch.tensor([[10.0, 20.0, 90.0, 100.0]]), torch.tensor([3]), seed=0)]
    losses = model.losses(model(images, [(128, 160)], targets), targets)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    body = model.backbone.body
    assert body.conv1.weight.grad is None  # the stem stays frozen (freeze_at=2)
    assert body.layer1[0].conv1.weight.grad is None
    grad = body.layer4[0].conv1.weight.grad
    assert grad is not None and bool(grad.abs().sum() > 0)


# ----------------------------------------------------------------------------------------
# Architecture descriptions


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"depth": 18}, "ResNet-18 (basic blocks)"),
        ({"depth": 34}, "ResNet-34 (basic blocks)"),
        ({"depth": 50}, "ResNet-50 (bottleneck blocks)"),
        ({"depth": 101}, "ResNet-101 (bottleneck blocks)"),
        ({"depth": 152}, "ResNet-152 (bottleneck blocks)"),
        (
            {"depth": 101, "groups": 32, "width_per_group": 8},
            "ResNeXt-101 32x8d (bottleneck blocks)",
        ),
        ({"depth": 50, "width_per_group": 128}, "Wide ResNet-50, width 128 (bottleneck blocks)"),
    ],
)
def test_describe_body(changes, expected):
    with torch.device("meta"):
        body = ResNet(replace(SEED.body, **changes))
    assert describe_body({k: tuple(v.shape) for k, v in body.state_dict().items()}) == expected


def test_describe_body_of_partial_and_foreign_key_sets():
    assert describe_body({"fc.weight": (10, 4)}) is None
    shapes = {"conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 3, 3)}
    assert describe_body(shapes) == "ResNet of (1, 0, 0, 0) blocks per stage (basic blocks)"


# ----------------------------------------------------------------------------------------
# Bad input: one line, nothing loaded


def _expect_error(body: ResNet, weights: Any, pattern: str) -> str:
    before = snapshot(body)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_body_weights(body, weights)
    assert "\n" not in str(info.value)
    assert_unchanged(body, before)
    return str(info.value)


def _edit(source: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    edited = dict(source)
    change(edited)
    return edited


def test_wrong_depth(r18, tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(r18["torchvision"], path)
    message = _expect_error(ResNet(body_config(50)), path, "ImageNet checkpoint holds")
    assert message == (
        f"{path}: ImageNet checkpoint holds a ResNet-18 (basic blocks) body, "
        "but the model's body is ResNet-50 (bottleneck blocks)"
    )


def test_resnet_into_resnext_body(r50):
    body = ResNet(body_config(50, groups=32, width_per_group=4))
    _expect_error(
        body,
        r50["torchvision"],
        re.escape("ResNet-50 (bottleneck blocks) body, but the model's body is ResNeXt-50 32x4d"),
    )


def test_truncated_key_set(r18):
    source = _edit(r18["torchvision"], lambda d: d.pop("layer2.1.bn2.running_var"))
    _expect_error(
        ResNet(body_config(18)),
        source,
        re.escape("does not fit the body: missing 1 body keys: layer2.1.bn2.running_var"),
    )


def test_unexpected_key(r18):
    extra = torch.zeros(64, 64, 3, 3)
    source = _edit(r18["torchvision"], lambda d: d.update({"layer1.0.conv4.weight": extra}))
    _expect_error(ResNet(body_config(18)), source, "unexpected 1 keys: layer1.0.conv4.weight$")


def test_wrong_shape(r50):
    bad = r50["torchvision"]["layer3.0.conv2.weight"][:, :128]
    source = _edit(r50["torchvision"], lambda d: d.update({"layer3.0.conv2.weight": bad}))
    _expect_error(
        ResNet(body_config(50)),
        source,
        re.escape("1 shape mismatches: layer3.0.conv2.weight (256, 128, 3, 3) vs (256, 256, 3, 3)"),
    )


def test_megengine_shape_only_for_megengine_checkpoints(r18):
    # A PyTorch checkpoint with one (1, C, 1, 1) bias is not silently reshaped.
    bias = r18["torchvision"]["bn1.bias"].reshape(1, 64, 1, 1)
    source = _edit(r18["torchvision"], lambda d: d.update({"bn1.bias": bias}))
    _expect_error(ResNet(body_config(18)), source, re.escape("bn1.bias (1, 64, 1, 1) vs (64,)"))


def test_detector_checkpoint_of_another_body(tmp_path):
    path = tmp_path / "faster_rcnn_res18.pkl"
    path.write_bytes(megengine_pickle_bytes(numpy_seeded(load_shapes(R18_DETECTOR_SHAPES))))
    message = _expect_error(ResNet(body_config(50)), path, "detector checkpoint holds")
    assert message.endswith(
        "detector checkpoint holds a ResNet-18 (basic blocks) body, "
        "but the model's body is ResNet-50 (bottleneck blocks)"
    )


def test_group_norm_body(r50):
    body = ResNet(body_config(50, norm="gn", freeze_at=0))
    _expect_error(
        body,
        r50["megengine"],
        re.escape(
            "checkpoint has batch-norm statistics (bn1.running_mean, ...); "
            "the model's body uses group norm"
        ),
    )


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", "empty file"),
        (b"this is not a checkpoint at all\n", "not a checkpoint file"),
        (b"cos\nsystem\n(S'true'\ntR.", "refused to unpickle forbidden global os.system"),
        (pickle.dumps([1, 2]), "checkpoint holds a list, not a dict of tensors"),
    ],
)
def test_garbage_files(content, pattern, tmp_path):
    path = tmp_path / "resnet.pkl"
    path.write_bytes(content)
    message = _expect_error(ResNet(body_config(18)), path, pattern)
    assert message.startswith(f"{path}: ")


def test_missing_file(tmp_path):
    _expect_error(ResNet(body_config(18)), tmp_path / "absent.pth", "no such file")


def test_truncated_zip_file(r18, tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(r18["torchvision"], path)
    path.write_bytes(path.read_bytes()[:4096])
    _expect_error(ResNet(body_config(18)), path, "not a checkpoint file")


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ({}, "checkpoint holds no tensors"),
        ({"classifier.weight": torch.zeros(3)}, r"not a ResNet checkpoint: .* classifier.weight"),
    ],
)
def test_not_a_resnet(source, pattern):
    _expect_error(ResNet(body_config(18)), source, pattern)
    with pytest.raises(TypeError, match="weights must be a file path or a state dict, not list"):
        load_body_weights(ResNet(body_config(18)), [1, 2])  # type: ignore[arg-type]


def test_bad_values(r18):
    nan = r18["torchvision"]["layer1.1.conv2.weight"].clone()
    nan[0, 0, 0, 0] = float("nan")
    body = ResNet(body_config(18))
    source = _edit(r18["torchvision"], lambda d: d.update({"layer1.1.conv2.weight": nan}))
    _expect_error(body, source, "layer1.1.conv2.weight holds non-finite values")
    ints = torch.ones(64, dtype=torch.int64)
    source = _edit(r18["torchvision"], lambda d: d.update({"bn1.weight": ints}))
    _expect_error(body, source, "bn1.weight holds torch.int64 values, not floating point")
    source = _edit(r18["torchvision"], lambda d: d.update({"bn1.weight": "ones"}))
    _expect_error(body, source, "bn1.weight: not an array but str")


def test_both_detector_prefixes(r18):
    source = {f"backbone.body.{k}": v for k, v in r18["torchvision"].items()}
    source["backbone.bottom_up.conv1.weight"] = r18["torchvision"]["conv1.weight"]
    _expect_error(
        ResNet(body_config(18)), source, "under both backbone.body. and backbone.bottom_up."
    )


def test_whole_model_is_refused(r18):
    with pytest.raises(TypeError, match=r"model.backbone.body\), not FasterRCNN"):
        load_body_weights(FasterRCNN(model_config(18)), r18["torchvision"])


def test_report_line():
    report = BodyLoadReport(
        source="r50.pkl",
        checkpoint_format="MegEngine ImageNet classifier",
        architecture="ResNet-50 (bottleneck blocks)",
        tensors_loaded=265,
        dropped=("fc.weight", "fc.bias"),
    )
    assert report.line() == (
        "body initialised from r50.pkl: MegEngine ImageNet classifier, ResNet-50 (bottleneck "
        "blocks), 265 tensors loaded; classifier dropped (fc.weight, fc.bias)"
    )
