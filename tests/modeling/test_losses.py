"""Training targets and losses: hand-computed cases, and a whole training iteration against a
straightforward loop-by-loop computation."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from helpers.slow_ops import iou_reference

from fasterrcnn.config import BoxHeadConfig, RPNConfig, SamplingConfig
from fasterrcnn.modeling import roi_training, rpn_training
from fasterrcnn.modeling.faster_rcnn import FasterRCNN
from fasterrcnn.modeling.roi_training import RoISamples, roi_losses, sample_rois
from fasterrcnn.modeling.rpn import Proposals, RPNOutput
from fasterrcnn.modeling.rpn_training import label_anchors, rpn_losses
from fasterrcnn.modeling.targets import Targets
from fasterrcnn.zoo.presets import PRESETS


def smooth_l1(x: float, beta: float) -> float:
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def bce(logit: float, target: int) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -math.log(p) if target else -math.log(1 - p)


def cross_entropy(logits: list[float], target: int) -> float:
    return math.log(sum(math.exp(v) for v in logits)) - logits[target]


GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
# Anchor 0 is the ground truth (IoU 1, object), 1 overlaps it by IoU 0.5 (ignored), 2 not at all
# and 3 by IoU 0.1 (background).
ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [0.0, 0.0, 10.0, 5.0],
        [20.0, 20.0, 30.0, 30.0],
        [9.0, 0.0, 19.0, 10.0],
    ]
)


def rpn_output(
    objectness: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor = ANCHORS
) -> RPNOutput:
    """One image's RPN output with a single level (proposals are not used by the losses)."""
    empty = Proposals(
        *(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0)),
        *(torch.zeros(0, dtype=torch.int64),) * 2,
    )
    return RPNOutput([anchors], [objectness[None]], [deltas[None]], [empty])


def test_iou_of_the_hand_made_anchors() -> None:
    ious = [iou_reference(GT[0].tolist(), a) for a in ANCHORS.tolist()]
    assert ious == pytest.approx([1.0, 0.5, 0.0, 10 / 190])


def test_rpn_sigmoid_losses_by_hand() -> None:
    cfg = RPNConfig(smooth_l1_beta=1 / 9)
    logits = torch.tensor([[2.0], [7.0], [-1.0], [0.5]])
    deltas = torch.tensor([[0.1, -0.2, 0.03, 0.0], [5.0, 5.0, 5.0, 5.0], [1.0] * 4, [2.0] * 4])
    losses = rpn_losses(rpn_output(logits, deltas), [Targets(GT, torch.tensor([0]))], cfg)
    # Sampled: anchor 0 (object), 2 and 3 (background); anchor 1 is ignored.
    objectness = (bce(2.0, 1) + bce(-1.0, 0) + bce(0.5, 0)) / 3
    box = sum(smooth_l1(d, 1 / 9) for d in (0.1, -0.2, 0.03, 0.0)) / 3  # target deltas are 0
    assert losses["rpn_objectness"].item() == pytest.approx(objectness, rel=1e-6)
    assert losses["rpn_box"].item() == pytest.approx(box, rel=1e-6)


def test_rpn_softmax_losses_and_nominal_normalizer_by_hand() -> None:
    cfg = RPNConfig(objectness="softmax2", smooth_l1_beta=0.0, loss_normalizer="nominal")
    logits = torch.tensor([[0.0, 2.0], [0.0, 0.0], [1.0, -1.0], [0.2, 0.5]])  # (bg, object)
    deltas = torch.tensor([[0.1, -0.2, 0.03, 0.0], [0.0] * 4, [0.0] * 4, [0.0] * 4])
    losses = rpn_losses(rpn_output(logits, deltas), [Targets(GT, torch.tensor([0]))], cfg)
    normalizer = 256  # batch_size_per_image x 1 image
    objectness = (
        cross_entropy([0.0, 2.0], 1) + cross_entropy([1.0, -1.0], 0) + cross_entropy([0.2, 0.5], 0)
    )
    assert losses["rpn_objectness"].item() == pytest.approx(objectness / normalizer, rel=1e-6)
    assert losses["rpn_box"].item() == pytest.approx(0.33 / normalizer, rel=1e-6)


def test_rpn_box_targets_by_hand() -> None:
    """An object anchor that is not its ground truth: targets (dx, dy, dw, dh) by hand."""
    gt = torch.tensor([[1.0, 2.0, 11.0, 14.0]])  # centre (6, 8), 10 x 12
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    output = rpn_output(torch.zeros(2, 1), torch.zeros(2, 4), anchors)
    cfg = RPNConfig(smooth_l1_beta=0.0, loss_normalizer="nominal")
    losses = rpn_losses(output, [Targets(gt, torch.tensor([0]))], cfg)
    # IoU 72 / 148 < 0.7, but the anchor is the ground truth's best: a low-quality object.
    expected = abs(0.1) + abs(0.3) + abs(math.log(1.0)) + abs(math.log(1.2))
    assert losses["rpn_box"].item() * 256 == pytest.approx(expected, rel=1e-6)


def test_rpn_matching_per_level() -> None:
    """Each level's best anchor is a low-quality match when levels are matched apart."""
    level0 = torch.tensor([[0.0, 0.0, 10.0, 8.0], [30.0, 30.0, 40.0, 40.0]])  # IoU 0.8, 0
    level1 = torch.tensor([[0.0, 0.0, 10.0, 4.0], [0.0, 0.0, 40.0, 40.0]])  # IoU 0.4, 0.0625
    together, _ = label_anchors([level0, level1], GT, RPNConfig())
    apart, _ = label_anchors([level0, level1], GT, RPNConfig(match_per_level=True))
    assert together.tolist() == [1, 0, -1, 0]
    assert apart.tolist() == [1, 0, 1, 0]


def test_rpn_image_without_objects_is_all_background() -> None:
    logits = torch.tensor([[2.0], [7.0], [-1.0], [0.5]])
    empty = Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    losses = rpn_losses(rpn_output(logits, torch.zeros(4, 4)), [empty], RPNConfig())
    expected = sum(bce(v, 0) for v in (2.0, 7.0, -1.0, 0.5)) / 4
    assert losses["rpn_objectness"].item() == pytest.approx(expected, rel=1e-6)
    assert losses["rpn_box"].item() == 0.0


HEAD = BoxHeadConfig(
    num_classes=3,
    sampling=SamplingConfig(fg_iou_threshold=0.5, bg_iou_threshold=0.5, batch_size_per_image=8),
    smooth_l1_beta=0.0,
)


def test_roi_sampling_adds_the_ground_truth() -> None:
    proposals = torch.tensor([[0.0, 0.0, 10.0, 6.0], [0.0, 0.0, 10.0, 4.0], [40.0, 40.0, 50, 50]])
    target = Targets(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([2]))
    samples = sample_rois([proposals], [target], HEAD)
    # Candidates: 3 proposals + the ground truth; IoUs 0.6, 0.4, 0, 1.
    assert samples.rois[:, 0].tolist() == [0.0] * 4
    boxes = samples.rois[:, 1:].tolist()
    foreground = {tuple(b) for b, f in zip(boxes, samples.foreground.tolist(), strict=True) if f}
    assert foreground == {(0.0, 0.0, 10.0, 6.0), (0.0, 0.0, 10.0, 10.0)}
    for box, cls, target_deltas in zip(
        boxes, samples.classes.tolist(), samples.box_targets, strict=True
    ):
        if tuple(box) in foreground:
            assert cls == 3  # class 2, after the background at logit 0
            h = box[3] - box[1]
            expected = [0.0, 10 * (5 - h / 2) / h, 0.0, 5 * math.log(10 / h)]
            assert target_deltas.tolist() == pytest.approx(expected, abs=1e-6)
        else:
            assert cls == 0
    last = replace(HEAD, background="last")
    assert sorted(sample_rois([proposals], [target], last).classes.tolist()) == [2, 2, 3, 3]


@pytest.mark.parametrize(
    ("background", "with_background", "slot"),
    [("first", True, 2), ("first", False, 1), ("last", True, 1), ("last", False, 1)],
)
def test_roi_losses_by_hand(background: str, with_background: bool, slot: int) -> None:
    """Foreground class 1: its deltas are at ``slot`` of the predictor's rows."""
    cfg = replace(HEAD, background=background, deltas_include_background=with_background)  # type: ignore[arg-type]
    fg_logit = 2 if background == "first" else 1
    bg_logit = 0 if background == "first" else 3
    logits = torch.tensor([[0.5, 1.0, -1.0, 0.2], [2.0, 0.0, 0.3, 1.0], [0.0, 0.1, 0.2, 0.3]])
    slots = 4 if with_background else 3
    deltas = torch.arange(3 * slots * 4, dtype=torch.float32).view(3, slots, 4) / 10
    samples = RoISamples(
        rois=torch.zeros(3, 5),
        classes=torch.tensor([fg_logit, bg_logit, bg_logit]),
        foreground=torch.tensor([True, False, False]),
        box_targets=torch.tensor([[0.1, 0.2, 0.3, 0.4], [9.0] * 4, [9.0] * 4]),
    )
    losses = roi_losses(logits, deltas, samples, cfg)
    rows = logits.tolist()
    expected_cls = (
        cross_entropy(rows[0], fg_logit)
        + cross_entropy(rows[1], bg_logit)
        + cross_entropy(rows[2], bg_logit)
    ) / 3
    predicted = [(slot * 4 + j) / 10 for j in range(4)]
    expected_box = sum(abs(p - t) for p, t in zip(predicted, (0.1, 0.2, 0.3, 0.4), strict=True)) / 3
    assert losses["roi_classification"].item() == pytest.approx(expected_cls, rel=1e-6)
    assert losses["roi_box"].item() == pytest.approx(expected_box, rel=1e-6)


# --- one whole iteration against a straightforward computation -------------------------------


def _first_choice(labels: torch.Tensor, num: int, fraction: float, generator=None):
    """A fixed "sampler": the first positives and negatives by index, within the quotas."""
    positive = torch.nonzero(labels == 1).squeeze(1)[: int(num * fraction)]
    negative = torch.nonzero(labels == 0).squeeze(1)[: num - len(positive)]
    return positive, negative


def _reference_labels(
    boxes: list[list[float]], gts: list[list[float]], s: SamplingConfig
) -> tuple[list[int], list[int]]:
    ious = [[iou_reference(g, b) for b in boxes] for g in gts]
    labels, matches = [], []
    for j in range(len(boxes)):
        column = [ious[g][j] for g in range(len(gts))]
        best = max(column) if column else 0.0
        matches.append(column.index(best) if column else 0)
        if best >= s.fg_iou_threshold:
            labels.append(1)
        elif s.bg_iou_low <= best < s.bg_iou_threshold:
            labels.append(0)
        else:
            labels.append(-1)
    if s.allow_low_quality_matches:
        for g in range(len(gts)):
            top = max(ious[g])
            for j in range(len(boxes)):
                if top > 0 and ious[g][j] == top:
                    labels[j] = 1
    return labels, matches


def _reference_pick(labels: list[int], num: int, fraction: float) -> tuple[list[int], list[int]]:
    positive = [j for j, v in enumerate(labels) if v == 1][: int(num * fraction)]
    negative = [j for j, v in enumerate(labels) if v == 0][: num - len(positive)]
    return positive, negative


def _encode(ref: list[float], gt: list[float], w: tuple[float, ...]) -> list[float]:
    rw, rh = ref[2] - ref[0], ref[3] - ref[1]
    gw, gh = gt[2] - gt[0], gt[3] - gt[1]
    return [
        w[0] * ((gt[0] + gw / 2) - (ref[0] + rw / 2)) / rw,
        w[1] * ((gt[1] + gh / 2) - (ref[1] + rh / 2)) / rh,
        w[2] * math.log(gw / rw),
        w[3] * math.log(gh / rh),
    ]


@pytest.mark.parametrize(
    "preset", ["torchvision_fasterrcnn_resnet50_fpn", "faster_rcnn_res50_coco_1x_800size"]
)
def test_one_iteration_equals_a_straightforward_computation(preset: str, monkeypatch) -> None:
    cfg = PRESETS[preset].config
    cfg = replace(cfg, body=replace(cfg.body, depth=18), fpn=replace(cfg.fpn, out_channels=32))
    cfg = replace(cfg, box_head=replace(cfg.box_head, fc_dim=64))
    torch.manual_seed(0)
    model = FasterRCNN(cfg).train()
    for p in model.rpn.head.parameters():  # livelier objectness than the init's
        torch.nn.init.normal_(p, std=0.3)
    monkeypatch.setattr(rpn_training, "sample_balanced", _first_choice)
    monkeypatch.setattr(roi_training, "sample_balanced", _first_choice)
    images = torch.randn(2, 3, 96, 128)
    sizes = [(96, 128), (80, 100)]
    targets = [
        Targets(
            torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 5.0, 120.0, 40.0]]), torch.tensor([0, 5])
        ),
        Targets(torch.tensor([[30.0, 30.0, 45.0, 41.0]]), torch.tensor([7])),
    ]
    raw = model(images, sizes, targets)
    losses = model.losses(raw, targets)

    # RPN, anchor by anchor.
    rpn_cfg = cfg.rpn
    anchors = torch.cat(raw.rpn.anchors).tolist()
    objectness = torch.cat(raw.rpn.objectness, dim=1).tolist()
    deltas = torch.cat(raw.rpn.deltas, dim=1).tolist()
    level_of = [lv for lv, a in enumerate(raw.rpn.anchors) for _ in range(len(a))]
    obj_sum = box_sum = 0.0
    count = 0
    for i, target in enumerate(targets):
        gts = target.boxes.tolist()
        if rpn_cfg.match_per_level:
            labels, matches = [], []
            for level in range(len(raw.rpn.anchors)):
                members = [a for a, lv in zip(anchors, level_of, strict=True) if lv == level]
                lab, mat = _reference_labels(members, gts, rpn_cfg.sampling)
                labels += lab
                matches += mat
        else:
            labels, matches = _reference_labels(anchors, gts, rpn_cfg.sampling)
        s = rpn_cfg.sampling
        positive, negative = _reference_pick(labels, s.batch_size_per_image, s.positive_fraction)
        for j in positive + negative:
            row = objectness[i][j]
            obj_sum += (
                bce(row[0], j in positive)
                if len(row) == 1
                else cross_entropy(row, int(j in positive))
            )
        for j in positive:
            target_deltas = _encode(anchors[j], gts[matches[j]], rpn_cfg.box_coder.weights)
            box_sum += sum(
                smooth_l1(p - t, rpn_cfg.smooth_l1_beta)
                for p, t in zip(deltas[i][j], target_deltas, strict=True)
            )
        count += len(positive) + len(negative)
    assert losses["rpn_objectness"].item() == pytest.approx(obj_sum / count, rel=1e-5)
    assert losses["rpn_box"].item() == pytest.approx(box_sum / count, rel=1e-5)

    # RoI heads: proposals + ground truth, labelled and picked by hand, run through the head.
    head = cfg.box_head
    rois, classes, fg_targets = [], [], []
    for i, (proposals, target) in enumerate(
        zip(raw.rpn.proposals.per_image(len(targets)), targets, strict=True)
    ):
        gts = target.boxes.tolist()
        candidates = proposals.boxes.tolist() + gts
        labels, matches = _reference_labels(candidates, gts, head.sampling)
        s = head.sampling
        positive, negative = _reference_pick(labels, s.batch_size_per_image, s.positive_fraction)
        for j in positive + negative:
            rois.append([float(i), *candidates[j]])
            if j in positive:
                cls = int(target.labels[matches[j]]) + 1  # both presets: background first
                classes.append(cls)
                fg_targets.append(
                    (
                        len(rois) - 1,
                        cls,
                        _encode(candidates[j], gts[matches[j]], head.box_coder.weights),
                    )
                )
            else:
                classes.append(0)
    torch.testing.assert_close(raw.rois, torch.tensor(rois))
    logits, box_deltas = model.roi_heads(raw.features[:4], torch.tensor(rois))
    cls_sum = sum(cross_entropy(row, c) for row, c in zip(logits.tolist(), classes, strict=True))
    box_sum = 0.0
    for row, cls, target_deltas in fg_targets:
        slot = cls if head.deltas_include_background else cls - 1
        predicted = box_deltas[row, slot].tolist()
        box_sum += sum(
            smooth_l1(p - t, head.smooth_l1_beta)
            for p, t in zip(predicted, target_deltas, strict=True)
        )
    assert losses["roi_classification"].item() == pytest.approx(cls_sum / len(rois), rel=1e-5)
    assert losses["roi_box"].item() == pytest.approx(box_sum / len(rois), rel=1e-5)
    assert len(fg_targets) >= 3  # the ground truth at least, so the box loss is exercised
