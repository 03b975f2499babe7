"""Record torchvision's own outputs on raw JPEGs (its own resize), for the JPEG parity test.

Needs torchvision (run it in a separate environment that has it):

    python tests/tools/make_torchvision_jpeg_reference.py IMAGE.jpg ... --out tests/fixtures/torchvision_jpeg

The weights are the name-seeded recipe of tests/fixtures/torchvision (tests/helpers/seeded.py).
Writes NAME.npz with input_size, proposals, proposal_scores, boxes, scores and labels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.seeded import DATA, load_shapes, torch_seeded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("images", nargs="+")
    parser.add_argument("--out", default=str(DATA / "torchvision_jpeg"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None
    ).eval()
    shapes = load_shapes(DATA / "torchvision" / "torchvision_state_dict_shapes.json")
    model.load_state_dict(torch_seeded(shapes))
    captured = {}
    select = model.rpn.filter_proposals

    def recording_select(*args, **kwargs):
        boxes, scores = select(*args, **kwargs)
        captured.update(proposals=boxes[0], proposal_scores=scores[0])
        return boxes, scores

    model.rpn.filter_proposals = recording_select
    model.transform.register_forward_hook(lambda m, i, o: captured.update(size=o[0].image_sizes[0]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.images:
        rgb = cv2.imread(name)[:, :, ::-1].copy()
        x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
        with torch.no_grad():
            det = model([x])[0]
        np.savez(
            out / (Path(name).stem + ".npz"),
            input_size=np.array(captured["size"]),
            proposals=captured["proposals"].numpy(),
            proposal_scores=captured["proposal_scores"].numpy(),
            boxes=det["boxes"].numpy(),
            scores=det["scores"].numpy(),
            labels=det["labels"].numpy(),
        )
        print(name, tuple(captured["size"]), len(det["boxes"]))


if __name__ == "__main__":
    main()
