"""bf16 inference: the layers run in bfloat16, every box-deciding stage in float32, and the
machine's support is checked up front. Its accuracy on a trained model is judged in
tests/training/test_learning.py (slow)."""

from __future__ import annotations

import pytest
import torch

import fasterrcnn
from fasterrcnn.cli import main
from fasterrcnn.modeling.precision import PrecisionError, check_precision

RES18 = "faster_rcnn_res18_coco_3x_800size"
NATIVE_BF16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


@pytest.fixture
def no_bf16_cpu(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


def test_check_precision(no_bf16_cpu):
    assert check_precision("fp32", "cpu") == "fp32"
    with pytest.raises(PrecisionError, match="choose fp32 or bf16"):
        check_precision("fp16", "cpu")
    with pytest.raises(PrecisionError, match="AVX-512 BF16 or AMX"):
        check_precision("bf16", "cpu")
    with pytest.raises(PrecisionError):
        fasterrcnn.create_model(RES18, precision="bf16")


def test_cli_refuses_bf16_on_a_cpu_without_it(no_bf16_cpu, tmp_path, capsys):
    image = tmp_path / "x.jpg"
    image.write_bytes(b"")  # never read: the check comes first
    status = main(["detect", str(image), "--model", RES18, "--precision", "bf16", "--out",
                   str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.count("\n") == 0
    assert err.startswith("fasterrcnn: error: --precision bf16: bf16 needs a CPU")


@pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bfloat16")
def test_bf16_layers_float32_boxes():
    torch.manual_seed(0)
    fp32 = fasterrcnn.create_model(RES18)
    bf16 = fasterrcnn.create_model(RES18, precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert bf16.backbone.body.conv1.weight.dtype == torch.float32  # parameters stay float32
    images = torch.randn(2, 3, 256, 320)
    sizes = [(256, 320), (224, 300)]
    with torch.inference_mode():
        raw, ref = bf16(images, sizes), fp32(images, sizes)
        detections = bf16.postprocess_detections(raw, sizes).per_image(2)
    assert all(f.dtype == torch.bfloat16 for f in raw.features)
    assert raw.class_logits.dtype == raw.box_deltas.dtype == torch.float32
    assert all(o.dtype == torch.float32 for o in raw.rpn.objectness + raw.rpn.deltas)
    for p in raw.rpn.proposals.per_image(2):
        assert p.boxes.dtype == p.scores.dtype == torch.float32 and len(p.boxes) > 0
    assert all(d.boxes.dtype == d.scores.dtype == torch.float32 for d in detections)
    # The same function, to bfloat16's precision: every pyramid level within 2% of float32.
    for a, b in zip(raw.features, ref.features, strict=True):
        assert (a.float() - b).norm() <= 0.02 * b.norm()


@pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bfloat16")
def test_fp32_model_follows_the_callers_autocast():
    """Training runs the fp32 model under its own autocast: the model must not turn it off."""
    torch.manual_seed(0)
    model = fasterrcnn.create_model(RES18)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        raw = model(torch.randn(1, 3, 256, 320), [(256, 320)])
    assert raw.features[0].dtype == torch.bfloat16
    assert raw.class_logits.dtype == torch.float32
