"""The embedding server: one model, many clients, micro-batched (FastAPI application)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..encoder import wire
from ..errors import ImageLoadError, VisdocError
from ..preprocess import ImagePreprocessor
from .batcher import MicroBatcher, QueueFull, Unit, image_cost, text_cost
from .protocol import Limits, RequestError, bearer_matches, parse_request
from .routes import HEALTH, METRICS

if TYPE_CHECKING:
    from ..encoder import Encoder
    from .library import UISettings


def create_app(model: Encoder, *, api_key: str | None = None, limits: Limits | None = None,
               max_wait: float = 0.005, ui: UISettings | None = None) -> FastAPI:  # fmt: skip
    """The server for ``model``. ``api_key`` requires ``Authorization: Bearer <key>``.
    ``ui`` adds the visual search page over that store at ``/ui`` (see :mod:`visdoc.server.ui`)."""

    limits = limits or Limits()
    registry = CollectorRegistry()
    requests_total = Counter("visdoc_requests", "Embedding requests by status", ["status"], registry=registry)
    batch_sizes = Histogram("visdoc_batch_size", "Inputs per forward pass group", registry=registry,
                            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))  # fmt: skip
    queue_depth = Gauge("visdoc_queue_depth", "Inputs waiting for the model", registry=registry)
    latency = Histogram("visdoc_request_seconds", "Request latency", registry=registry)
    items_total = Counter("visdoc_inputs", "Inputs embedded", ["kind"], registry=registry)

    def encode(kind: str, units: list[Unit]) -> Any:
        first = units[0]
        options = dict(task=first.task, dim=first.dim, dense=True, multivector=True)
        if kind == "text":
            return model.encode_texts([u.content for u in units], prompt_name=first.prompt, **options)
        return model.encode_images([u.content for u in units], max_pixels=first.max_pixels, **options)

    batcher = MicroBatcher(encode, max_queue=limits.max_queue_items, max_queue_bytes=limits.max_queue_bytes,
                           max_wait=max_wait, on_batch=batch_sizes.observe)  # fmt: skip
    queue_depth.set_function(lambda: batcher.depth)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        batcher.start()
        yield
        await batcher.stop()
        if page is not None:
            await asyncio.to_thread(page.close)

    app = FastAPI(title="visdoc embedding server", lifespan=lifespan)
    page = None
    if ui is not None:
        from .ui import install_ui

        page = install_ui(app, model, ui, api_key=api_key)

    def error(status: int, message: str) -> JSONResponse:
        requests_total.labels(str(status)).inc()
        return JSONResponse({"detail": message}, status_code=status)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):  # noqa: ANN001, ANN202
        if api_key and request.url.path.startswith("/v1/"):
            if not bearer_matches(request.headers.get("authorization", ""), api_key):
                return error(401, "missing or wrong API key (send 'Authorization: Bearer <key>')")
        return await call_next(request)

    @app.get(HEALTH)
    async def health() -> dict:
        return {"status": "ok", "model": model.name, "queue_depth": batcher.depth}

    @app.get(METRICS)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(wire.MODEL_PATH)
    async def info() -> dict:
        """What a remote client needs to behave like the local model."""
        return wire.ModelInfo.of(model, dataclasses.asdict(limits)).to_json()

    @app.get(wire.TOKENIZER_PATH)
    async def tokenizer() -> PlainTextResponse:
        return PlainTextResponse(model.tokenizer.to_json(), media_type="application/json")

    @app.post(wire.EMBEDDINGS_PATH)
    async def embeddings(request: Request) -> Any:
        start = time.perf_counter()
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            return error(413, f"request body of {declared} bytes; the limit is {limits.max_body_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():  # chunked uploads too: stop reading at the limit
            size += len(chunk)
            if size > limits.max_body_bytes:
                return error(413, f"request body over {limits.max_body_bytes} bytes")
            chunks.append(chunk)
        try:
            parsed = parse_request(json.loads(b"".join(chunks)), limits)
            _check_arguments(model, parsed)
            images = [(i, await _image_bytes(content, i, limits)) for i, content in parsed.images]
            decoded = await asyncio.to_thread(_decode_images, model, images, parsed.max_pixels, limits)
        except RequestError as exc:
            return error(exc.status, str(exc))
        except (ValueError, RecursionError) as exc:  # JSON syntax, encoding, nesting
            return error(400, f"malformed JSON: {exc}")
        loop = asyncio.get_running_loop()
        units = [Unit("text", text, parsed.task, parsed.prompt, parsed.dim, None, loop.create_future(), len(text),
                      text_cost(text)) for _, text in parsed.texts]  # fmt: skip
        within, factor = parsed.max_pixels or model.pixels.max_pixels, model.pixels.factor  # the resize's budget
        units += [Unit("image", image, parsed.task, parsed.prompt, parsed.dim, parsed.max_pixels, loop.create_future(),
                       image.width * image.height * 3, image_cost(image.width, image.height, within, factor))
                  for _, image in decoded]  # fmt: skip
        positions = [i for i, _ in parsed.texts] + [i for i, _ in decoded]
        try:
            batcher.submit(units)
        except QueueFull as exc:
            return error(429, f"server busy: {exc}; retry later")
        vectors = await asyncio.gather(*(u.future for u in units), return_exceptions=True)
        for position, outcome in zip(positions, vectors, strict=True):
            if isinstance(outcome, BaseException):
                reason = outcome.reason if isinstance(outcome, ImageLoadError) else str(outcome)
                status = 400 if isinstance(outcome, (VisdocError, ValueError)) else 500
                return error(status, f"input {position}: {reason}")
        data = []
        tokens = 0
        for position, encoded in sorted(zip(positions, vectors, strict=True), key=lambda pv: pv[0]):
            dense = wire.encode_vector(encoded.dense, parsed.base64)
            item = {"object": "embedding", "index": position, "embedding": dense}
            if parsed.multivector:
                item[wire.TOKEN_VECTORS] = wire.encode_vector(encoded.multivector, parsed.base64)
                item[wire.TOKENS] = encoded.tokens
                item[wire.CONTENT_SPAN] = list(encoded.content_span) if encoded.content_span else None
                if encoded.grid is not None:
                    item[wire.GRID] = list(encoded.grid)
            tokens += encoded.tokens
            data.append(item)
        items_total.labels("text").inc(len(parsed.texts))
        items_total.labels("image").inc(len(images))
        requests_total.labels("200").inc()
        latency.observe(time.perf_counter() - start)
        return {"object": "list", "model": model.name, "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip

    return app


def _check_arguments(model: Encoder, request: Any) -> None:
    if request.dim is not None and request.dim not in model.dims:
        raise RequestError(400, f"dimensions={request.dim} is not supported; use one of {list(model.dims)}")
    if request.task not in model.tasks:
        raise RequestError(400, f"task {request.task!r} is not served by this model")
    floor, ceiling = model.pixels.min_pixels, model.pixels.max_pixels
    if request.max_pixels is not None and not floor <= request.max_pixels <= ceiling:
        raise RequestError(400, f"max_pixels must be between {floor} and {ceiling}")


def _decode_images(model: Encoder, images: list[tuple[int, bytes]], max_pixels: int | None, limits: Limits) -> list:
    """Check sizes, decode fully and check the resize, so no bad image ever reaches a shared batch."""
    from ..images import image_size, load_rgb

    decoded = []
    for index, data in images:
        try:
            width, height = image_size(data, index)
            if width * height > limits.max_image_pixels:
                raise RequestError(
                    413, f"input {index}: {width}x{height} pixels; the limit is {limits.max_image_pixels}"
                )
            image = load_rgb(data, index, limit=limits.max_image_pixels)  # the server's own limit decides
            ImagePreprocessor(model.pixels).grid(width, height, max_pixels=max_pixels)
        except ImageLoadError as exc:
            raise RequestError(400, f"input {index}: {exc.reason}") from None
        except ValueError as exc:  # aspect ratio
            raise RequestError(400, f"input {index}: {exc}") from None
        decoded.append((index, image))
    return decoded


async def _image_bytes(content: Any, index: int, limits: Limits) -> bytes:
    if isinstance(content, bytes):
        return content
    import httpx  # only when image URLs were explicitly allowed

    try:
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
            response = await client.get(content)
            response.raise_for_status()
    except httpx.HTTPError as exc:
        raise RequestError(400, f"input {index}: cannot fetch image: {exc}") from None
    if len(response.content) > limits.max_body_bytes:
        raise RequestError(413, f"input {index}: image larger than {limits.max_body_bytes} bytes")
    return response.content
