"""Detection on image files, arrays, videos and streams, returning numpy results with class
names."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import overload

from fasterrcnn.data.image_loader import ImageSource
from fasterrcnn.data.images import ImageError
from fasterrcnn.data.sources import MISSING_PYAV, has_pyav, source_kind
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.loop import run_inference
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.inference.slicing import SliceOptions, sliced_inference

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
    slicing: SliceOptions | None = None,
    track: bool = False,
) -> Iterator[Detections]:
    """Detections of each image of ``sources`` (paths or HxWx3 uint8 arrays in ``channels``
    order, any iterable, of any length), in input order; a video file or stream URL among
    them (or as ``sources`` itself) gives one result per frame, with its ``frame`` index and
    ``time``, each video read as it comes.

    Decoding and resizing run in ``workers`` processes; images of the same padded size share
    batches of up to ``batch_size``; only a bounded number of images is in memory at a time.
    An image or video that cannot be read is passed to ``on_error`` (by default logged as a
    one-line warning) and skipped (a damaged video after its frames before the damage).
    ``slicing`` runs each image as overlapping tiles and merges their detections
    (:mod:`~fasterrcnn.inference.slicing`; no proposals then). ``track`` gives a video's
    detections ``track_ids`` stable across its frames (:mod:`~fasterrcnn.inference.tracking`).
    """
    if isinstance(sources, (str, Path)) and source_kind(sources) != "image":
        sources = [sources]
    report = on_error or (lambda err: logger.warning("skipped: %s", err))
    groups: Iterable[tuple[bool, Iterable[ImageSource]]] = groupby(sources, key=_is_video)
    if _is_sequence(sources) and not (isinstance(sources, (list, tuple)) and any(
        _is_video(source) for source in sources
    )):  # fmt: skip
        groups = [(False, sources)]  # as it is: the loop reads a sequence through a DataLoader
    for video, group in groups:
        if video:
            for source in group:
                yield from _video_detections(
                    model, source, batch_size, score_threshold, report, track
                )
            continue
        images: Iterable[ImageSource] = group
        results = (
            run_inference(
                model, images, batch_size=batch_size, workers=workers, channels=channels,
                score_threshold=score_threshold, return_proposals=return_proposals,
            )
            if slicing is None
            else sliced_inference(
                model, images, slicing, batch_size=batch_size, channels=channels,
                score_threshold=score_threshold,
            )
        )  # fmt: skip
        for result in results:
            if result.detections is not None:
                yield result.detections
            elif result.error is not None:
                report(result.error)


def _is_sequence(sources: Iterable[ImageSource]) -> bool:
    return hasattr(sources, "__len__") and hasattr(sources, "__getitem__")


def _is_video(source: ImageSource) -> bool:
    return isinstance(source, (str, Path)) and source_kind(source) != "image"


def _video_detections(
    model: BatchDetector,
    source: ImageSource,
    batch_size: int,
    score_threshold: float | None,
    on_error: Callable[[ImageError], None],
    track: bool = False,
) -> Iterator[Detections]:
    if not has_pyav():
        on_error(ImageError(f"{source}: {MISSING_PYAV}"))
        return
    from fasterrcnn.data.video import VideoError, VideoReader
    from fasterrcnn.inference.tracking import ByteTracker
    from fasterrcnn.inference.video_run import video_detections

    assert isinstance(source, (str, Path))
    try:
        with VideoReader(source) as reader:
            tracker = ByteTracker(frame_rate=reader.info.fps or 25.0) if track else None
            for _, detections in video_detections(
                model, reader, batch_size=batch_size, score_threshold=score_threshold,
                tracker=tracker,
            ):  # fmt: skip
                yield detections
    except VideoError as err:
        on_error(ImageError(str(err)))


@overload
def predict(
    model: BatchDetector,
    source: ImageSource,
    *,
    channels: str = ...,
    score_threshold: float | None = ...,
    return_proposals: bool = ...,
    batch_size: int = ...,
    slicing: SliceOptions | None = ...,
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
    slicing: SliceOptions | None = ...,
) -> list[Detections]: ...
def predict(
    model: BatchDetector,
    source: ImageSource | list[ImageSource],
    *,
    channels: str = "RGB",
    score_threshold: float | None = None,
    return_proposals: bool = False,
    batch_size: int = 1,
    slicing: SliceOptions | None = None,
) -> Detections | list[Detections]:
    """Run ``model`` on one image source or a list of them; raise :class:`ImageError` for an
    image that cannot be read.

    ``channels`` gives the channel order of array inputs; files are decoded as they are.
    ``score_threshold`` (optional) drops detections below it after the model's own
    post-processing. Images of a list share batches of up to ``batch_size`` images of the same
    padded size; each gets exactly its single-image result. ``slicing`` as for
    :func:`iter_detections`.
    """
    sources: list[ImageSource] = source if isinstance(source, list) else [source]
    results = []
    for result in (
        run_inference(
            model, sources, batch_size=batch_size, channels=channels,
            score_threshold=score_threshold, return_proposals=return_proposals,
        )
        if slicing is None
        else sliced_inference(
            model, sources, slicing, batch_size=batch_size, channels=channels,
            score_threshold=score_threshold,
        )
    ):  # fmt: skip
        if result.error is not None:
            raise result.error
        assert result.detections is not None
        results.append(result.detections)
    return results if isinstance(source, list) else results[0]
