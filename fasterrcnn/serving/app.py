"""``fasterrcnn serve``: the model behind HTTP (FastAPI on uvicorn), with a web page.

- ``POST /v1/detect``: an image (multipart field ``image`` or the raw body) -> its detections
  as JSON, or drawn on a JPEG with ``?format=image``; ``?slice=S`` runs it as S x S tiles
  (:mod:`~fasterrcnn.inference.slicing`; ``ServeOptions.slicing`` is the default);
- ``GET /v1/models``: the model, its classes, input settings and the server's limits;
- ``GET /healthz``; ``GET /``: the page (``static/``), which calls ``/v1/detect``.

Concurrent requests share batches (:class:`~fasterrcnn.serving.request_batcher.Batcher`, a thread off
the event loop); a sliced request's tiles are batched among themselves, never with another
request's image. At most ``max_queue`` detect requests are in progress at once (reading,
waiting or running); one more is answered 503 with ``Retry-After``. Every refusal is a JSON
``{"error": "..."}`` with a 4xx status (503 when busy), and the server goes on answering.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import cv2
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from fasterrcnn.data.images import ImageError, ImageTooLarge, decode_image
from fasterrcnn.inference.detections import Detections
from fasterrcnn.inference.drawing import draw_detections
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.inference.slicing import SliceOptions, tile_windows
from fasterrcnn.serving.request_batcher import Batcher
from fasterrcnn.serving.requests import (
    RequestError,
    answer,
    image_and_fields,
    parse_options,
    read_body,
    select,
)

STATIC = resources.files("fasterrcnn.serving") / "static"


@dataclass(frozen=True)
class ServeOptions:
    """The server's batching and limits (the ``fasterrcnn serve`` options); ``slicing``: the
    sliced inference of the requests that name no ``slice`` (None: whole images);
    ``max_tiles``: the most tiles a sliced image may be cut into (more is a 400)."""

    max_batch: int = 4
    max_wait_ms: float = 10.0
    max_queue: int = 32
    max_body_bytes: int = 20 << 20
    max_pixels: int = 40_000_000
    timeout_s: float = 60.0
    score_threshold: float = 0.5
    slicing: SliceOptions | None = None
    max_tiles: int = 100


class _Service:
    """The model, its batcher and the count of detect requests in progress."""

    def __init__(self, model: BatchDetector, name: str, options: ServeOptions) -> None:
        self.model = model
        self.name = name
        self.options = options
        self.batcher = Batcher(model, options.max_batch, options.max_wait_ms / 1000)
        self.in_progress = 0  # changed on the event loop only
        self.refused_busy = 0

    def retry_after(self) -> str:
        """Seconds until the requests in progress should be done, at least 1."""
        per_image = self.batcher.seconds_per_image or 1.0
        return str(max(1, math.ceil(self.in_progress * per_image)))

    async def detect(self, request: Request) -> Response:
        options = self.options
        start = time.perf_counter()
        deadline = start + options.timeout_s
        try:
            body = await asyncio.wait_for(
                read_body(request, options.max_body_bytes), options.timeout_s
            )
        except asyncio.TimeoutError:
            raise RequestError(
                408, f"request body not received within {options.timeout_s:g} s"
            ) from None
        data, fields = await image_and_fields(request, body)
        detect_options = parse_options(
            request.query_params, fields, self.model.config.classes, options.score_threshold,
            options.slicing,
        )  # fmt: skip
        decode_start = time.perf_counter()
        image = await run_in_threadpool(_decode, data, options.max_pixels)
        decoded = time.perf_counter()
        if detect_options.slicing is not None:
            _check_tiles(image, detect_options.slicing, options.max_tiles)
        future, timing = self.batcher.submit(
            image, detect_options.slicing, detect_options.score_threshold
        )
        try:
            detections = await asyncio.wait_for(
                asyncio.wrap_future(future), max(deadline - time.perf_counter(), 0.001)
            )
        except asyncio.TimeoutError:
            future.cancel()  # dropped by the batcher if it has not started it
            raise RequestError(
                503, f"not answered within {options.timeout_s:g} s: the server is busy",
                {"Retry-After": self.retry_after()},
            ) from None  # fmt: skip
        except ImageError as err:
            raise RequestError(400, str(err)) from None
        except Exception as err:
            raise RequestError(500, f"inference failed: {err}") from None
        done = time.perf_counter()
        timing_ms = {
            "decode": 1000 * (decoded - decode_start),
            "queue": 1000 * timing.waited,
            "inference": 1000 * timing.inference,
            "total": 1000 * (done - start),
        }
        chosen = select(detections, detect_options)
        if detect_options.format == "image":
            jpeg = await run_in_threadpool(_drawn_jpeg, image, chosen)
            return Response(jpeg, media_type="image/jpeg")
        return JSONResponse(answer(self.name, chosen, timing_ms))

    def describe(self) -> dict[str, Any]:
        """The body of ``GET /v1/models``."""
        config = self.model.config
        limits = asdict(self.options)
        return {
            "model": self.name,
            "device": str(self.model.device),
            "classes": [
                {"id": cat, "name": name}
                for cat, name in zip(config.classes.category_ids, config.classes.names, strict=True)
            ],
            "input": asdict(config.input),
            "score_threshold": limits.pop("score_threshold"),
            "slicing": limits.pop("slicing"),
            "limits": limits,
        }


def _check_tiles(image: np.ndarray, slicing: SliceOptions, max_tiles: int) -> None:
    """A 400 where ``slicing`` cuts ``image`` into more than ``max_tiles`` tiles."""
    height, width = image.shape[:2]
    tiles = len(tile_windows(height, width, slicing.size, slicing.overlap))
    if tiles > max_tiles:
        raise RequestError(
            400, f"slice {slicing.size} cuts this {width} x {height} image into {tiles} tiles, "
            f"more than this server's {max_tiles}: ask for a larger slice",
        )  # fmt: skip


def _decode(data: bytes, max_pixels: int) -> np.ndarray:
    try:
        return decode_image(data, "image", max_pixels=max_pixels)
    except ImageTooLarge as err:
        raise RequestError(413, str(err)) from None
    except ImageError as err:
        raise RequestError(400, str(err)) from None


def _drawn_jpeg(image: np.ndarray, detections: Detections) -> bytes:
    ok, encoded = cv2.imencode(".jpg", draw_detections(image, detections))
    if not ok:
        raise RequestError(500, "could not encode the drawn image")
    return encoded.tobytes()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(model: BatchDetector, name: str, options: ServeOptions | None = None) -> FastAPI:
    """The application serving ``model`` (reported as ``name``); its batcher stops when the
    application shuts down."""
    service = _Service(model, name, options or ServeOptions())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(service.batcher.close, 30.0)

    app = FastAPI(title="fasterrcnn", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(RequestError)
    async def refused(_: Request, err: RequestError) -> JSONResponse:
        if err.status == 503:
            service.refused_busy += 1
        return _error(err.status, err.message, err.headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail), dict(err.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return _error(400, "; ".join(str(e.get("msg", e)) for e in err.errors()))

    @app.post("/v1/detect")
    async def detect(request: Request) -> Response:
        if service.in_progress >= service.options.max_queue:
            raise RequestError(
                503, f"busy: {service.in_progress} requests in progress, try again later",
                {"Retry-After": service.retry_after()},
            )  # fmt: skip
        service.in_progress += 1
        try:
            return await service.detect(request)
        finally:
            service.in_progress -= 1

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return service.describe()

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        batcher = service.batcher
        return {
            "status": "ok",
            "model": service.name,
            "in_progress": service.in_progress,
            "images_done": batcher.images_done,
            "batches_done": batcher.batches_done,
            "sliced_done": batcher.sliced_done,
            "refused_busy": service.refused_busy,
        }

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
