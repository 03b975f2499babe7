"""The in-process timing of the inference benchmark: ``predict`` end to end, the same work
split into its stages (preprocess, backbone+FPN, RPN, RoI heads, postprocess) and
torchvision's model on the same image; the untimed warm-up on the first image; and the timed
runs on every image, interleaved with their order rotating, summed up in one record per image
(median times, shapes, RoIs and FLOPs)."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from inference_flops import FlopModel
from inference_setup import Setup

import fasterrcnn
from fasterrcnn.inference.predict import predict
from fasterrcnn.modeling.faster_rcnn import size_tensor

STAGES = ("preprocess", "backbone+FPN", "RPN", "RoI heads", "postprocess")


def run_predict(model: Any, image: np.ndarray, clock) -> tuple[float, int]:
    """``predict`` end to end, for our model or an exported one (the same engine)."""
    t0 = clock()
    dets = predict(model, image)
    return clock() - t0, len(dets)


@torch.inference_mode()
def run_stages(model: fasterrcnn.Detector, image: np.ndarray, clock) -> dict[str, Any]:
    """``predict``'s work piece by piece (as in FasterRCNN.forward/detect): stage times,
    the padded input shape and the number of RoIs."""
    t = [clock()]
    batch = model.preprocess([image])
    t.append(clock())
    features = model.backbone(batch.tensor)
    t.append(clock())
    sizes = size_tensor(batch.image_sizes, batch.tensor.device)
    rpn = model.rpn(features, sizes, batch.padded_size)
    t.append(clock())
    rois = rpn.proposals.rois()
    class_logits, box_deltas = model.roi_heads(features[:4], rois)
    t.append(clock())
    originals = size_tensor(batch.original_sizes, batch.tensor.device)
    dets = model.postprocess(class_logits, box_deltas, rois, sizes, originals)
    for tensor in (dets.boxes, dets.scores, dets.labels):
        tensor.cpu().numpy()  # as predict does
    t.append(clock())
    return {
        "stages": {name: t[i + 1] - t[i] for i, name in enumerate(STAGES)},
        "input_shape": list(batch.tensor.shape[-2:]),
        "resized": list(batch.image_sizes[0]),
        "rois": int(rois.shape[0]),
        "detections": len(dets.scores),
    }


def run_torchvision(
    model: Any, image: np.ndarray, device: str, clock: Callable[[], float]
) -> tuple[float, int]:
    t0 = clock()
    with torch.inference_mode():
        x = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div_(255)
        out = model([x])[0]
        n = len(out["scores"].cpu())
    return clock() - t0, n


def warm_up(setup: Setup) -> None:
    """Untimed runs of every in-process path on the first image."""
    image, clock = setup.images[0], setup.clock
    for _ in range(setup.args.warmup):
        run_predict(setup.model, image, clock)
        run_stages(setup.model, image, clock)
        if setup.tv_model is not None:
            run_torchvision(setup.tv_model, image, setup.args.device, clock)


def time_images(setup: Setup, flop_model: FlopModel) -> list[dict[str, Any]]:
    """Time every image in this process and count its FLOPs: one record per image, and a
    progress line for each on stderr."""
    torchvision = setup.tv_model is not None
    records = []
    for i, (path, image) in enumerate(zip(setup.paths, setup.images, strict=True)):
        samples = interleaved_samples(setup, image, i)
        rec = image_record(path, image, samples, flop_model, torchvision)
        records.append(rec)
        tv_part = f", torchvision {rec['torchvision_s']:.3f} s" if torchvision else ""
        print(
            f"[{i + 1}/{len(setup.images)}] {path.name}: predict {rec['predict_s']:.3f} s, "
            f"stages {rec['stages_total_s']:.3f} s{tv_part}",
            file=sys.stderr,
            flush=True,
        )
    return records


def interleaved_samples(setup: Setup, image: np.ndarray, index: int) -> dict[str, list[Any]]:
    """``--repeat`` runs of ``predict``, of the stages and of torchvision on ``image``
    (the ``index``-th), interleaved, their order rotating from run to run."""
    model, clock = setup.model, setup.clock
    samples: dict[str, list[Any]] = {"predict": [], "stages": [], "torchvision": []}
    runs: list[tuple[str, Callable[[], Any]]] = [
        ("predict", partial(run_predict, model, image, clock)),
        ("stages", partial(run_stages, model, image, clock)),
    ]
    if setup.tv_model is not None:
        tv_run = partial(run_torchvision, setup.tv_model, image, setup.args.device, clock)
        runs.append(("torchvision", tv_run))
    for r in range(setup.args.repeat):
        shift = (index + r) % len(runs)  # rotate the order so no path always goes first
        for name, fn in runs[shift:] + runs[:shift]:
            samples[name].append(fn())
    return samples


def image_record(
    path: Path,
    image: np.ndarray,
    samples: dict[str, list[Any]],
    flop_model: FlopModel,
    torchvision: bool,
) -> dict[str, Any]:
    """One image's figures: the median times of its runs, its shapes, RoIs and FLOPs."""
    staged = samples["stages"][-1]
    stage_times = {s: statistics.median(x["stages"][s] for x in samples["stages"]) for s in STAGES}
    flops = flop_model(staged["input_shape"], staged["rois"])
    rec = {
        "image": path.name,
        "original": list(image.shape[:2]),
        "resized": staged["resized"],
        "input_shape": staged["input_shape"],
        "rois": staged["rois"],
        "flops": {**flops, "total": sum(flops.values())},
        "predict_s": statistics.median(t for t, _ in samples["predict"]),
        "stages_s": stage_times,
        "stages_total_s": sum(stage_times.values()),
        "detections": samples["predict"][-1][1],
    }
    if torchvision:
        rec["torchvision_s"] = statistics.median(t for t, _ in samples["torchvision"])
        rec["torchvision_detections"] = samples["torchvision"][-1][1]
    return rec
