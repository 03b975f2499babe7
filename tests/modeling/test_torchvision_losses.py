"""Training losses against torchvision's own ``FasterRCNN`` (skipped where torchvision does not
import; run it with a Python that has torchvision, see the README's "Development" section).

Both models get the same name-seeded weights, the same real COCO images and ground truth, and
the same sampled anchors and RoIs: torchvision's samplers are wrapped to record their choice,
which is then replayed into this project's sampling (after checking that both label every
anchor and proposal alike).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from conftest import IMAGES, TORCHVISION
from helpers.seeded import DATA

import fasterrcnn
from fasterrcnn.data.images import read_image
from fasterrcnn.modeling import roi_training, rpn_training
from fasterrcnn.modeling.targets import Targets

torchvision = pytest.importorskip("torchvision")

IMAGE_IDS = (139, 802)  # two real images with several objects each (one batch)


def _coco_targets() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    data = json.loads((DATA / "coco" / "instances_val2017.json").read_text())
    files = {image["id"]: image["file_name"] for image in data["images"]}
    images, targets = [], []
    for image_id in IMAGE_IDS:
        rgb = read_image(IMAGES / files[image_id])
        images.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
        boxes, labels = [], []
        for ann in data["annotations"]:
            if ann["image_id"] == image_id and not ann["iscrowd"]:
                x, y, w, h = ann["bbox"]
                boxes.append([x, y, x + w, y + h])
                labels.append(ann["category_id"])  # torchvision's 91-way label = category id
        targets.append({"boxes": torch.tensor(boxes), "labels": torch.tensor(labels)})
    return images, targets


def _torchvision_model(state_dict: dict[str, torch.Tensor]) -> Any:
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    # As torchvision builds it for trained weights: frozen BN (eps 1e-5), stem + res2 frozen.
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    model = FasterRCNN(_resnet_fpn_extractor(body, 3), num_classes=91)
    model.load_state_dict(state_dict)
    return model


class _Recorder:
    """Wraps a torchvision sampler; keeps each image's labels and chosen masks."""

    def __init__(self, sampler: Callable[..., Any]) -> None:
        self.sampler = sampler
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __call__(self, labels: list[torch.Tensor]) -> Any:
        positive, negative = self.sampler(labels)
        for lab, pos, neg in zip(labels, positive, negative, strict=True):
            self.calls.append((lab.clone(), pos.clone(), neg.clone()))
        return positive, negative


def _replay(recorder: _Recorder) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    calls = iter(recorder.calls)

    def sample(labels: torch.Tensor, num: int, fraction: float, generator: Any = None):
        tv_labels, positive, negative = next(calls)
        # Both sides must label every anchor / proposal alike before sampling.
        assert torch.equal(labels == 1, tv_labels >= 1)
        assert torch.equal(labels == 0, tv_labels == 0)
        assert torch.equal(labels == -1, tv_labels == -1)
        return torch.nonzero(positive).squeeze(1), torch.nonzero(negative).squeeze(1)

    return sample


def _our_run(
    tv_state_dict: dict[str, torch.Tensor],
    image_list: Any,
    targets: list[Targets],
    samplers: tuple[_Recorder, _Recorder],
    features: list[torch.Tensor] | None = None,
) -> tuple[Any, dict[str, torch.Tensor]]:
    ours = fasterrcnn.create_model(TORCHVISION, weights=tv_state_dict).train()
    if features is not None:  # the heads alone, on torchvision's own features
        ours.backbone.forward = lambda images: features  # type: ignore[method-assign]
    patch = pytest.MonkeyPatch()
    patch.setattr(rpn_training, "sample_balanced", _replay(samplers[0]))
    patch.setattr(roi_training, "sample_balanced", _replay(samplers[1]))
    try:
        raw = ours(image_list.tensors, image_list.image_sizes, targets)
        losses = ours.losses(raw, targets)
    finally:
        patch.undo()
    sum(losses.values()).backward()
    return ours, losses


@pytest.fixture(scope="module")
def runs(tv_state_dict) -> dict[str, Any]:
    torch.manual_seed(0)
    images, tv_targets = _coco_targets()
    tv = _torchvision_model(tv_state_dict).train()
    samplers = (_Recorder(tv.rpn.fg_bg_sampler), _Recorder(tv.roi_heads.fg_bg_sampler))
    tv.rpn.fg_bg_sampler, tv.roi_heads.fg_bg_sampler = samplers
    seen: dict[str, Any] = {}
    tv.transform.register_forward_hook(lambda m, i, out: seen.update(transformed=out))
    tv.backbone.register_forward_hook(lambda m, i, out: seen.update(features=out))
    tv_losses = tv(images, tv_targets)
    sum(tv_losses.values()).backward()
    image_list, resized = seen["transformed"]
    targets = [Targets(t["boxes"], t["labels"] - 1) for t in resized]
    features = [f.detach() for f in seen["features"].values()]
    ours, our_losses = _our_run(tv_state_dict, image_list, targets, samplers)
    heads, head_losses = _our_run(tv_state_dict, image_list, targets, samplers, features)
    return {
        "tv": tv,
        "tv_losses": tv_losses,
        "ours": ours,
        "our_losses": our_losses,
        "heads": heads,
        "head_losses": head_losses,
    }


PAIRS = {
    "rpn_objectness": "loss_objectness",
    "rpn_box": "loss_rpn_box_reg",
    "roi_classification": "loss_classifier",
    "roi_box": "loss_box_reg",
}
HEAD_PARAMETERS = [
    ("roi_heads.predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.weight"),
    ("roi_heads.predictor.bbox_pred.weight", "roi_heads.box_predictor.bbox_pred.weight"),
    ("roi_heads.box_head.fc1.weight", "roi_heads.box_head.fc6.weight"),
    ("roi_heads.box_head.fc2.bias", "roi_heads.box_head.fc7.bias"),
    ("rpn.head.objectness.weight", "rpn.head.cls_logits.weight"),
    ("rpn.head.deltas.weight", "rpn.head.bbox_pred.weight"),
    ("rpn.head.conv.weight", "rpn.head.conv.0.0.weight"),
]


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return (ours - theirs).abs().max().item() / theirs.abs().max().item()


def test_heads_losses_and_gradients_equal_torchvision_on_the_same_features(runs) -> None:
    """The RPN and RoI heads with their targets, sampling and losses, on torchvision's own
    FPN features: equal to float rounding."""
    for name, tv_name in PAIRS.items():
        ours, theirs = runs["head_losses"][name].item(), runs["tv_losses"][tv_name].item()
        print(f"{name} (same features): {ours:.7f} vs torchvision {theirs:.7f}")
        assert ours > 0
        assert ours == pytest.approx(theirs, rel=1e-6, abs=0)
    ours, theirs = dict(runs["heads"].named_parameters()), dict(runs["tv"].named_parameters())
    for name, tv_name in HEAD_PARAMETERS:
        error = _relative_error(ours[name].grad, theirs[tv_name].grad)
        print(f"{name} gradient (same features): max |difference| / max |gradient| {error:.1e}")
        assert error <= 1e-5, name


def test_whole_model_losses_and_gradients_match_torchvision(runs) -> None:
    """The whole model: its FPN features differ from torchvision's by float rounding (a frozen
    norm folded into its conv, about 2e-6 relative), which the random heads amplify."""
    for name, tv_name in PAIRS.items():
        ours, theirs = runs["our_losses"][name].item(), runs["tv_losses"][tv_name].item()
        print(f"{name}: {ours:.7f} vs torchvision {theirs:.7f}")
        assert ours == pytest.approx(theirs, rel=2e-4, abs=0)
    ours, theirs = dict(runs["ours"].named_parameters()), dict(runs["tv"].named_parameters())
    names = [*HEAD_PARAMETERS] + [
        (name, name)
        for name in (
            "backbone.body.layer4.2.conv3.weight",
            "backbone.body.layer2.0.conv1.weight",
            "backbone.fpn.output_convs.0.conv.weight",
        )
    ]
    for name, tv_name in names:
        tv_name = tv_name.replace("fpn.output_convs.0.conv", "fpn.layer_blocks.0.0")
        a, b = ours[name].grad.flatten().double(), theirs[tv_name].grad.flatten().double()
        cosine = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
        print(f"{name} gradient: cosine {cosine:.6f}, relative error {_relative_error(a, b):.1e}")
        assert cosine >= 0.9999, name


def test_frozen_stages_get_no_gradient(runs) -> None:
    params = dict(runs["ours"].named_parameters())
    assert not params["backbone.body.conv1.weight"].requires_grad
    assert not params["backbone.body.layer1.0.conv1.weight"].requires_grad
    assert params["backbone.body.layer2.0.conv1.weight"].requires_grad
    assert params["backbone.body.layer2.0.conv1.weight"].grad is not None
