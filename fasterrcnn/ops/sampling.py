"""Draw a fixed-size, class-balanced minibatch of labelled anchors (or proposals)."""

from __future__ import annotations

import torch
from torch import Tensor

from fasterrcnn.ops.matcher import BACKGROUND, FOREGROUND, IGNORE


def sample_balanced(
    labels: Tensor,
    num_samples: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Choose up to ``num_samples`` labelled entries, at most ``positive_fraction`` positive.

    ``P = min(#positives, int(num_samples * positive_fraction))`` positives are drawn, then
    ``Q = min(#negatives, num_samples - P)`` negatives, so negatives fill the places that
    positives leave; ignored entries (-1) are never chosen. Each draw is uniform without
    replacement: one ``torch.randperm`` over the positives, then one over the negatives, in
    that order, so a seeded ``generator`` (on ``labels``' device) repeats the choice.

    Args:
        labels: Tensor[A] int, 1 (positive), 0 (negative) or -1 (ignore).
        num_samples: the most entries to choose, ``>= 0``.
        positive_fraction: the most positives as a fraction of ``num_samples``, in ``[0, 1]``.
        generator: random source of the draws; the global one if None.

    Returns:
        ``(positive, negative)``: Tensor[P] and Tensor[Q] int64 indices into ``labels``, each
        sorted ascending.
    """
    if num_samples < 0:
        raise ValueError(f"sample_balanced needs num_samples >= 0, got {num_samples}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(
            f"sample_balanced needs 0 <= positive_fraction <= 1, got {positive_fraction}"
        )
    if labels.dim() != 1:
        raise ValueError(f"sample_balanced needs labels Tensor[A], not {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"sample_balanced needs integer labels, not {labels.dtype}")
    if bool(((labels < IGNORE) | (labels > FOREGROUND)).any()):
        raise ValueError("sample_balanced needs labels in {1, 0, -1}")

    positive = torch.nonzero(labels == FOREGROUND).squeeze(1)
    negative = torch.nonzero(labels == BACKGROUND).squeeze(1)
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)
    pos_order = torch.randperm(positive.numel(), generator=generator, device=labels.device)
    neg_order = torch.randperm(negative.numel(), generator=generator, device=labels.device)
    chosen_pos = positive[pos_order[:num_pos]].sort().values
    chosen_neg = negative[neg_order[:num_neg]].sort().values
    return chosen_pos, chosen_neg
