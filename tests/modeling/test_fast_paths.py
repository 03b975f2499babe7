"""The CPU fast paths give the plain fp32 model's outputs: frozen batch norm folded once into
its conv (and refolded whenever a tensor involved changes), and channels-last weights."""

from __future__ import annotations

import copy

import pytest
import torch

import fasterrcnn
from fasterrcnn.modeling.backbone import FrozenBatchNorm2d, conv_norm
from fasterrcnn.ops.fused import fusable, linear_relu

RES18 = "faster_rcnn_res18_coco_3x_800size"


def _model() -> fasterrcnn.Detector:
    torch.manual_seed(0)
    model = fasterrcnn.create_model(RES18)  # fresh weights: random, the same for every call
    for module in model.modules():  # statistics that make the fold matter
        if isinstance(module, FrozenBatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.uniform_(0.5, 1.5)
    return model


def _features(model: fasterrcnn.Detector, x: torch.Tensor, grad: bool) -> list[torch.Tensor]:
    with torch.set_grad_enabled(grad):
        return [f.detach() for f in model.backbone(x)]


def test_folded_weights_are_reused_and_match_folding_on_every_call():
    model = _model()
    x = torch.randn(1, 3, 160, 224)
    every_call = _features(model, x, grad=True)  # autograd on: folded on each call, not kept
    first = _features(model, x, grad=False)
    norm = model.backbone.body.layer1[0].bn1
    kept = norm._folded[1]
    second = _features(model, x, grad=False)
    assert norm._folded[1] is kept  # reused, not recomputed
    for a, b, c in zip(every_call, first, second, strict=True):
        # Inference also fuses the residual addition and the ReLU into oneDNN's convolution
        # (other kernels, other rounding): equal to float32 precision, not bit for bit.
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
        assert torch.equal(b, c)


def test_folded_weights_follow_every_change_of_the_tensors():
    model = _model()
    x = torch.randn(1, 3, 160, 224)
    _features(model, x, grad=False)
    other = _model()
    with torch.no_grad():  # new values copied in place, norm statistics and conv weights
        for module in other.modules():
            if isinstance(module, FrozenBatchNorm2d):
                module.running_var.mul_(1.5)
        other.backbone.body.conv1.weight.mul_(-1)
    model.load_state_dict(other.state_dict())
    torch.testing.assert_close(
        _features(model, x, grad=False), _features(other, x, grad=True), rtol=1e-4, atol=1e-4
    )
    with torch.no_grad():  # an in-place change of one buffer
        model.backbone.body.layer2[0].bn2.running_mean.add_(0.3)
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module._folded = None
    torch.testing.assert_close(
        _features(model, x, grad=False), _features(fresh, x, grad=False), rtol=0, atol=0
    )


def test_channels_last_model_matches_the_contiguous_one():
    model = _model()
    assert model.backbone.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    contiguous = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    assert contiguous.backbone.body.conv1.weight.is_contiguous()
    x = torch.randn(1, 3, 160, 224)
    fast, plain = _features(model, x, grad=False), _features(contiguous, x, grad=False)
    assert fast[0].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)
    image = (torch.rand(200, 300, 3) * 255).to(torch.uint8).numpy()
    a, b = model.predict(image), contiguous.predict(image)
    assert len(a.boxes) == len(b.boxes)
    torch.testing.assert_close(
        torch.as_tensor(a.boxes), torch.as_tensor(b.boxes), rtol=0, atol=1e-2
    )
    torch.testing.assert_close(
        torch.as_tensor(a.scores), torch.as_tensor(b.scores), rtol=0, atol=1e-4
    )


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("kernel", [1, 3])
def test_fused_convolution_equals_the_separate_ops(kernel, residual, relu, overwrite):
    """The fused oneDNN convolution (float32 CPU inference) against conv, add and ReLU run
    one after the other with autograd on (which never fuses)."""
    torch.manual_seed(kernel)
    conv = torch.nn.Conv2d(32, 64, kernel, stride=1, padding=kernel // 2, bias=False)
    norm = FrozenBatchNorm2d(64)
    with torch.no_grad():
        norm.running_var.uniform_(0.5, 2.0)
        norm.running_mean.normal_()
        norm.weight.normal_()
    x = torch.randn(2, 32, 24, 40).contiguous(memory_format=torch.channels_last)
    shortcut = torch.randn(2, 64, 24, 40).contiguous(memory_format=torch.channels_last)
    add = shortcut if residual else None
    expected = conv_norm(conv, norm, x, None if add is None else add.clone(), relu)
    assert expected.requires_grad  # the separate ops
    kept = shortcut.clone()
    with torch.inference_mode():
        in_place = fusable(x)
        assert in_place == torch.backends.mkldnn.is_available()
        fused = conv_norm(conv, norm, x, add, relu, overwrite_residual=overwrite)
    torch.testing.assert_close(fused, expected.detach(), rtol=1e-5, atol=1e-5)
    if relu:
        assert fused.min() == 0
    if residual and overwrite and in_place:  # accumulated in place
        assert fused.data_ptr() == shortcut.data_ptr()
    else:  # the caller's map is left alone
        assert fused.data_ptr() != shortcut.data_ptr()
        torch.testing.assert_close(shortcut, kept, rtol=0, atol=0)


@pytest.mark.parametrize("preset", [RES18, "torchvision_fasterrcnn_resnet50_fpn"])
def test_in_place_residuals_leave_the_input_and_every_feature_intact(preset):
    """Blocks add their residual branch into their input's memory when nothing else needs
    it: the image tensor and each returned feature must come out as the separate ops give."""
    torch.manual_seed(0)
    model = fasterrcnn.create_model(preset)
    x = torch.randn(1, 3, 96, 128).contiguous(memory_format=torch.channels_last)
    image = x.clone()
    expected = _features(model, x, grad=True)
    with torch.inference_mode():
        actual = model.backbone(x)
    torch.testing.assert_close(x, image, rtol=0, atol=0)
    pointers = {f.data_ptr() for f in actual}
    assert len(pointers) == len(actual)
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)


def test_fused_linear_relu_equals_the_separate_ops():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(20, 64)
    expected = torch.relu(linear(x))
    with torch.inference_mode():
        assert fusable(x) == torch.backends.mkldnn.is_available()
        actual = linear_relu(x, linear)
    torch.testing.assert_close(actual, expected.detach(), rtol=1e-5, atol=1e-5)
    assert actual.min() == 0
