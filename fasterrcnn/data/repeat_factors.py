"""Repeat-factor sampling: rare classes' images seen more often per epoch (the LVIS rule).

With ``N`` training images and threshold ``T``:

* ``f(c)``: the fraction of the ``N`` images that hold at least one box of class ``c``;
* ``r(c) = max(1, sqrt(T / f(c)))``: classes in fewer than a fraction ``T`` of the images are
  repeated, the rarer the more;
* an image's factor ``r_i`` is the largest ``r(c)`` over the classes of its boxes (1 for a
  background-only image).

Each epoch, image ``i`` occurs ``floor(r_i)`` times, plus once more with probability
``frac(r_i)``: the extra occurrences are drawn from (seed, epoch) alone, so that every rank
and a resumed run draw the same ones. Over many epochs image ``i`` occurs ``r_i`` times per
epoch on average.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence

import torch


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float; a one-line ValueError unless it is a finite number > 0."""
    if (
        not isinstance(threshold, (int, float))
        or isinstance(threshold, bool)
        or not math.isfinite(threshold)
        or threshold <= 0
    ):
        raise ValueError(f"the repeat threshold must be a number > 0, not {threshold!r}")
    return float(threshold)


def class_repeat_factors(
    image_labels: Sequence[Collection[int]], threshold: float
) -> dict[int, float]:
    """``r(c)`` of every class that occurs in ``image_labels`` (one collection of class labels
    per training image, background-only images included as empty collections)."""
    threshold = check_threshold(threshold)
    if not image_labels:
        return {}
    images_with = Counter(label for labels in image_labels for label in set(labels))
    total = len(image_labels)
    return {
        label: max(1.0, math.sqrt(threshold / (n / total)))
        for label, n in sorted(images_with.items())
    }


def repeat_factors(image_labels: Sequence[Collection[int]], threshold: float) -> list[float]:
    """``r_i`` of every image: the largest ``r(c)`` over its classes, 1 for an image
    without any (see the module docstring)."""
    per_class = class_repeat_factors(image_labels, threshold)
    return [max((per_class[label] for label in labels), default=1.0) for labels in image_labels]


def check_factors(factors: Sequence[float], num_images: int) -> tuple[float, ...]:
    """``factors`` as a tuple of floats, one per image, each finite and >= 1 (else a
    one-line ValueError)."""
    if len(factors) != num_images:
        raise ValueError(f"{len(factors)} repeat factors for {num_images} images")
    for i, factor in enumerate(factors):
        if (
            not isinstance(factor, (int, float))
            or isinstance(factor, bool)
            or not math.isfinite(factor)
            or factor < 1
        ):
            raise ValueError(f"repeat factor {i} must be a finite number >= 1, not {factor!r}")
    return tuple(float(f) for f in factors)


def epoch_counts(factors: Sequence[float], generator: torch.Generator) -> list[int]:
    """How often each image occurs in one epoch: ``floor(r_i)`` plus one with probability
    ``frac(r_i)``, one uniform draw per image from ``generator`` (float64)."""
    draws = torch.rand(len(factors), generator=generator, dtype=torch.float64).tolist()
    counts = []
    for factor, draw in zip(factors, draws, strict=True):
        whole = math.floor(factor)
        counts.append(whole + (draw < factor - whole))
    return counts


def describe_factors(factors: Sequence[float], threshold: float) -> str:
    """One log line about the factors of a training set."""
    repeated = sum(f > 1 for f in factors)
    return (
        f"repeat-factor sampling (threshold {threshold:g}): {repeated} of {len(factors)} "
        f"images repeated, up to {max(factors, default=1.0):.2f} times; about "
        f"{sum(factors):.0f} image occurrences per epoch"
    )
