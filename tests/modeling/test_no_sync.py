"""The forward pass and post-processing read nothing back from the device except where a size
must be known (checked on the CPU by recording the host reads the ops make).

Host reads are the aten ops that turn a tensor into a Python value (``.item()``, ``bool()``,
``int()``: ``_local_scalar_dense``), ``.tolist()``/``.numpy()``, and ops whose output size
depends on values (``nonzero``, ``unique``, indexing with a boolean mask). NMS is the allowed exception (on a GPU it is one
call); everything else must not depend on the batch: no loop over images, levels or classes
that reads values back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fasterrcnn.modeling.postprocess as postprocess_module
import fasterrcnn.modeling.rpn as rpn_module

HOST_READS = {
    "_local_scalar_dense", "nonzero", "nonzero_numpy", "nonzero_static", "_unique2", "unique_dim",
    "unique_consecutive", "masked_select",
}  # fmt: skip


class HostReads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func._schema.name.split("::")[-1]
        if name == "index" and any(t is not None and t.dtype == torch.bool for t in args[1]):
            name = "boolean mask"  # x[mask]: the size is the number of True
        if not self.paused and (name in HOST_READS or name == "boolean mask"):
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def recording(monkeypatch) -> Iterator[HostReads]:
    mode = HostReads()

    def wrap(nms):
        def outside_the_count(*args, **kwargs):
            mode.paused = True
            try:
                return nms(*args, **kwargs)
            finally:
                mode.paused = False

        return outside_the_count

    for module in (rpn_module, postprocess_module):
        monkeypatch.setattr(module, "batched_nms", wrap(module.batched_nms))
    for method in ("tolist", "numpy"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _name=method, **kwargs):
            if not mode.paused:
                mode.counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    with mode:
        yield mode


def _host_reads(model, batch: int, monkeypatch) -> Counter[str]:
    torch.manual_seed(batch)
    images = torch.randn(batch, 3, 320, 448)
    sizes = torch.tensor([[320, 448], [300, 440], [320, 400]][:batch])
    with torch.inference_mode(), recording(monkeypatch) as mode:
        raw = model(images, sizes)
        detections = model.postprocess_detections(raw, sizes, sizes * 2)
    assert len(detections.scores) > 0 and len(raw.rpn.proposals) > 100 * batch
    return mode.counts


def test_forward_reads_back_only_sizes(tv_model, monkeypatch):
    one = _host_reads(tv_model, 1, monkeypatch)
    three = _host_reads(tv_model, 3, monkeypatch)
    assert one == three  # nothing per image
    # Sizes that must be known: the proposals (valid boxes, then the best per image), the
    # RoIs of each pyramid level, the detections (candidates, then the best per image). No
    # scalar, list or numpy read.
    assert one == Counter({"nonzero_numpy": 2, "nonzero": 4, "boolean mask": 2})
