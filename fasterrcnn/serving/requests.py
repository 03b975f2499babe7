"""What ``POST /v1/detect`` accepts: the image (multipart field ``image`` or the raw body,
read within a size limit) and its options, each checked with a one-line reason when refused;
and the answer's JSON.

``slice`` (a tile size in pixels, 0: off) and ``slice_overlap`` ask for sliced inference;
without ``slice`` the server's default applies (``fasterrcnn serve --slice``), whose other
settings (whole image, merge) a request's ``slice`` and ``slice_overlap`` keep.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from fasterrcnn.config import ClassTable
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.slicing import SliceOptions

RAW_TYPES = ("application/octet-stream",)
OPTION_NAMES = (
    "score_threshold", "max_detections", "classes", "format", "slice", "slice_overlap",
)  # fmt: skip


class RequestError(Exception):
    """A refused request: its HTTP status, the one-line reason, and extra headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class DetectOptions:
    """A request's options: which detections to answer with, as JSON or a drawn JPEG, and
    how the image runs (``slicing``: as tiles; None: whole)."""

    score_threshold: float
    max_detections: int | None = None
    category_ids: frozenset[int] | None = None
    format: str = "json"
    slicing: SliceOptions | None = None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"bad Content-Length {declared!r}")
        if int(declared) > limit:
            raise RequestError(413, f"request body of {int(declared):,} bytes is over the "
                               f"limit of {limit:,}")  # fmt: skip
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"request body is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


async def image_and_fields(request: Request, body: bytes) -> tuple[bytes, dict[str, str]]:
    """The image's bytes and the form's other fields, from an already read ``body``."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return await _from_multipart(request, body)
    if media_type and not media_type.startswith("image/") and media_type not in RAW_TYPES:
        raise RequestError(
            415,
            f"unsupported Content-Type {media_type!r}: send the image as the raw body "
            "(image/* or application/octet-stream) or as the multipart/form-data field 'image'",
        )
    if not body:
        raise RequestError(400, "empty request body: no image")
    return body, {}


async def _from_multipart(request: Request, body: bytes) -> tuple[bytes, dict[str, str]]:
    sent = False

    async def replay() -> Message:  # the body again, for the form parser
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=4, max_fields=16)
    except (MultiPartException, HTTPException) as err:
        detail = getattr(err, "message", None) or getattr(err, "detail", "")
        raise RequestError(400, f"bad multipart body: {detail}") from None
    try:
        upload = form.get("image")
        if upload is None:
            raise RequestError(400, "the multipart body has no field 'image'")
        if not isinstance(upload, UploadFile):
            raise RequestError(400, "the multipart field 'image' must be a file")
        data = await upload.read()
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str) and k != "image"}
    finally:
        await form.close()
    if not data:
        raise RequestError(400, "the multipart field 'image' is empty: no image")
    return data, fields


def parse_options(
    query: Mapping[str, str],
    fields: Mapping[str, str],
    classes: ClassTable,
    default: float,
    slicing: SliceOptions | None = None,
) -> DetectOptions:
    """The options from the query string, or else from the form's fields; ``default`` and
    ``slicing`` are the server's score threshold and sliced inference."""
    unknown = sorted(set(query) - set(OPTION_NAMES))
    if unknown:
        raise RequestError(400, f"unknown parameter {unknown[0]!r} (known: "
                           f"{', '.join(OPTION_NAMES)})")  # fmt: skip
    values = {name: query.get(name, fields.get(name)) for name in OPTION_NAMES}
    threshold = default
    if (text := values["score_threshold"]) is not None:
        threshold = _number(text)
        if not math.isfinite(threshold):
            raise RequestError(
                400, f"score_threshold must be a number between 0 and 1, not {text!r}"
            )
        if not 0 <= threshold <= 1:
            raise RequestError(400, f"score_threshold must be between 0 and 1, not {text!r}")
    max_detections = None
    if (text := values["max_detections"]) is not None:
        if not text.strip().isdigit():
            raise RequestError(400, f"max_detections must be a whole number >= 0, not {text!r}")
        max_detections = int(text)
    fmt = (values["format"] or "json").lower()
    if fmt not in ("json", "image"):
        raise RequestError(400, f"format must be 'json' or 'image', not {values['format']!r}")
    category_ids = None
    if (text := values["classes"]) is not None:
        category_ids = frozenset(_class_ids(text, classes))
    chosen = _slicing(values["slice"], values["slice_overlap"], slicing)
    return DetectOptions(threshold, max_detections, category_ids, fmt, chosen)


def _number(text: str) -> float:
    """``text`` as a float; NaN where it is not a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def _slicing(
    size: str | None, overlap: str | None, default: SliceOptions | None
) -> SliceOptions | None:
    """The request's sliced inference: ``slice`` (0: off) and ``slice_overlap`` over the
    server's ``default``, checked as :meth:`SliceOptions.check` checks it."""
    chosen = default
    if size is not None:
        try:
            pixels = int(size) if size.strip().isdecimal() else -1
        except ValueError:  # more digits than Python converts
            pixels = -1
        if pixels < 0:
            raise RequestError(
                400, f"slice must be a whole number of pixels (0: off), not {size!r}"
            )
        chosen = None if pixels == 0 else replace(default or SliceOptions(pixels), size=pixels)
    if overlap is not None:
        if not math.isfinite(fraction := _number(overlap)):
            raise RequestError(400, f"slice_overlap must be a number, not {overlap!r}")
        if chosen is None:
            raise RequestError(400, "slice_overlap needs sliced inference: give slice, the "
                               "tile size in pixels")  # fmt: skip
        chosen = replace(chosen, overlap=fraction)
    if chosen is not None:
        try:
            chosen.check()
        except ValueError as err:
            raise RequestError(400, str(err)) from None
    return chosen


def _class_ids(text: str, classes: ClassTable) -> list[int]:
    """Category ids of a comma-separated list of class names (any case) or ids."""
    by_name = {
        name.lower(): cat for name, cat in zip(classes.names, classes.category_ids, strict=True)
    }
    ids = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.isdigit() and int(item) in classes.category_ids:
            ids.append(int(item))
        elif item.lower() in by_name:
            ids.append(by_name[item.lower()])
        else:
            raise RequestError(
                400, f"unknown class {item!r} (GET /v1/models lists the model's "
                f"{len(classes)} classes)"
            )  # fmt: skip
    if not ids:
        raise RequestError(400, "classes is empty: name classes or ids, comma-separated")
    return ids


def select(detections: Detections, options: DetectOptions) -> Detections:
    """The detections the options ask for, still in decreasing score order."""
    keep = detections.scores >= options.score_threshold
    if options.category_ids is not None:
        keep &= np.isin(detections.category_ids, list(options.category_ids))
    index = np.flatnonzero(keep)[: options.max_detections]
    return Detections(
        boxes=detections.boxes[index],
        scores=detections.scores[index],
        category_ids=detections.category_ids[index],
        class_names=[detections.class_names[i] for i in index],
        image_size=detections.image_size,
    )


def answer(model: str, detections: Detections, timing_ms: dict[str, float]) -> dict[str, Any]:
    """The JSON of ``/v1/detect``: boxes in original-image pixels, rounded as
    ``fasterrcnn detect`` rounds them."""
    plain = detections.to_dict()
    return {
        "model": model,
        "image": {"width": plain["width"], "height": plain["height"]},
        "detections": [
            {
                "label": det["class_name"],
                "category_id": det["category_id"],
                "score": det["score"],
                "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), det["box"], strict=True)),
            }
            for det in plain["detections"]
        ],
        "timing_ms": {key: round(value, 1) for key, value in timing_ms.items()},
    }
