"""Detection on image files or arrays, returning numpy results with class names."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import overload

from fasterrcnn.data.image_loader import ImageSource
from fasterrcnn.data.images import ImageError
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.loop import run_inference
from fasterrcnn.inference.protocol import BatchDetector

logger = logging.getLogger("fasterrcnn")


def iter_detections(
    model: BatchDetector,
    sources: Iterable[ImageSource],
    *,
    batch_size: int = 1,
    workers: int = 0,
    channels: str = "RGB",
    score_threshold: float | None = None,
    return_proposals: bool = False,
    on_error: Callable[[ImageError], None] | None = None,
) -> Iterator[Detections]:
    """Detections of each image of ``sources`` (paths or HxWx3 uint8 arrays in ``channels``
    order, any iterable, of any length), in input order.

    Decoding and resizing run in ``workers`` processes; images of the same padded size share
    batches of up to ``batch_size``; only a bounded number of images is in memory at a time.
    An image that cannot be read is passed to ``on_error`` (by default logged as a one-line
    warning) and skipped.
    """
    for result in run_inference(
        model,
        sources,
        batch_size=batch_size,
        workers=workers,
        channels=channels,
        score_threshold=score_threshold,
        return_proposals=return_proposals,
    ):
        if result.detections is not None:
            yield result.detections
        elif result.error is not None:
            if on_error is None:
                logger.warning("skipped: %s", result.error)
            else:
                on_error(result.error)


@overload
def predict(
    model: BatchDetector,
    source: ImageSource,
    *,
    channels: str = ...,
    score_threshold: float | None = ...,
    return_proposals: bool = ...,
    batch_size: int = ...,
) -> Detections: ...
@overload
def predict(
    model: BatchDetector,
    source: list[ImageSource],
    *,
    channels: str = ...,
    score_threshold: float | None = ...,
    return_proposals: bool = ...,
    batch_size: int = ...,
) -> list[Detections]: ...
def predict(
    model: BatchDetector,
    source: ImageSource | list[ImageSource],
    *,
    channels: str = "RGB",
    score_threshold: float | None = None,
    return_proposals: bool = False,
    batch_size: int = 1,
) -> Detections | list[Detections]:
    """Run ``model`` on one image source or a list of them; raise :class:`ImageError` for an
    image that cannot be read.

    ``channels`` gives the channel order of array inputs; files are decoded as they are.
    ``score_threshold`` (optional) drops detections below it after the model's own
    post-processing. Images of a list share batches of up to ``batch_size`` images of the same
    padded size; each gets exactly its single-image result.
    """
    sources: list[ImageSource] = source if isinstance(source, list) else [source]
    results = []
    for result in run_inference(
        model,
        sources,
        batch_size=batch_size,
        channels=channels,
        score_threshold=score_threshold,
        return_proposals=return_proposals,
    ):
        if result.error is not None:
            raise result.error
        assert result.detections is not None
        results.append(result.detections)
    return results if isinstance(source, list) else results[0]
