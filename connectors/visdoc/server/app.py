"""The embedding server: one model, many clients, micro-batched (FastAPI application).

``POST /v1/embeddings`` (fields: :mod:`visdoc.server.protocol`), ``GET /v1/models`` and
``/v1/models/{id}`` (:mod:`visdoc.server.model_ids`), ``GET /v1/model`` and ``/v1/tokenizer.json``
for visdoc's remote client; errors under ``/v1/`` in OpenAI's shape (:mod:`visdoc.server.errors`).
"""

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
from .encodings import response_item
from .errors import error_response, install_error_handlers
from .model_ids import ModelIds
from .protocol import EmbeddingRequest, Limits, RequestError, bearer_matches, check_lengths, parse_request
from .routes import HEALTH, METRICS

if TYPE_CHECKING:
    from ..encoder import Encoder
    from .library import UISettings

LATE = "late"  # the batcher's kind of a late-chunking request


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
        if kind == LATE:  # a solo unit: the request's texts, one pass
            return model.encode_late_chunks(first.content, task=first.task, prompt_name=first.prompt, dim=first.dim,
                                            multivector=True)  # fmt: skip
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
    models = ModelIds(model.name, model.tasks)

    def count(status: int) -> None:
        requests_total.labels(str(status)).inc()

    def error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
        count(status)
        return error_response(status, message, param=param, code=code)

    install_error_handlers(app, count)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):  # noqa: ANN001, ANN202
        if api_key and request.url.path.startswith("/v1/"):
            if not bearer_matches(request.headers.get("authorization", ""), api_key):
                count(401)
                return error_response(401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                                      code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
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

    @app.get(wire.MODELS_PATH)
    async def list_models() -> dict:
        """OpenAI's model list: the model's id and one id per task (see :mod:`visdoc.server.model_ids`)."""
        return models.listing()

    @app.get(wire.MODELS_PATH + "/{model_id:path}")
    async def retrieve_model(model_id: str) -> Any:
        try:
            return models.entry(model_id)
        except RequestError as exc:
            return error(exc.status, str(exc), exc.param, exc.code)

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
            parsed = parse_request(json.loads(b"".join(chunks)), limits, models)
            _check_arguments(model, parsed)
            if not parsed.truncate and not parsed.late_chunking:
                await asyncio.to_thread(check_lengths, model.tokenizer, parsed)
            images = [(i, await _image_bytes(content, i, limits)) for i, content in parsed.images]
            decoded = await asyncio.to_thread(_decode_images, model, images, parsed.max_pixels, limits)
        except RequestError as exc:
            return error(exc.status, str(exc), exc.param, exc.code)
        except (ValueError, RecursionError) as exc:  # JSON syntax, encoding, nesting
            return error(400, f"malformed JSON: {exc}")
        units, positions = _units(model, parsed, decoded)
        try:
            batcher.submit(units)
        except QueueFull as exc:
            return error(429, f"server busy: {exc}; retry later")
        outcomes = await asyncio.gather(*(u.future for u in units), return_exceptions=True)
        for position, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                reason = outcome.reason if isinstance(outcome, ImageLoadError) else str(outcome)
                status = 400 if isinstance(outcome, (VisdocError, ValueError)) else 500
                message = reason if parsed.late_chunking else f"input {position}: {reason}"
                return error(status, message, "input" if status == 400 else None)
        if parsed.late_chunking:  # one solo unit: the whole result, in the texts' order
            encoded = [outcomes[0].item(i) for i in range(len(parsed.texts))]
            outcomes, positions = encoded, [i for i, _ in parsed.texts]
        data = [
            response_item(position, encoded, parsed.embedding_type, parsed.multivector)
            for position, encoded in sorted(zip(positions, outcomes, strict=True), key=lambda pv: pv[0])
        ]
        tokens = sum(encoded.tokens for encoded in outcomes)
        items_total.labels("text").inc(len(parsed.texts))
        items_total.labels("image").inc(len(images))
        requests_total.labels("200").inc()
        latency.observe(time.perf_counter() - start)
        return {"object": "list", "model": models.of(parsed.api_task), "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip

    return app


def _check_arguments(model: Encoder, request: EmbeddingRequest) -> None:
    if request.dim is not None and request.dim not in model.dims:
        raise RequestError(400, f"dimensions={request.dim} is not supported; use one of {list(model.dims)}",
                           param="dimensions")  # fmt: skip
    if request.task not in model.tasks:
        raise RequestError(400, f"task {request.api_task!r} is not served by this model", param="task")
    floor, ceiling = model.pixels.min_pixels, model.pixels.max_pixels
    if request.max_pixels is not None and not floor <= request.max_pixels <= ceiling:
        raise RequestError(400, f"max_pixels must be between {floor} and {ceiling}", param="max_pixels")
    if request.late_chunking and not hasattr(model, "encode_late_chunks"):
        raise RequestError(400, f"late_chunking is not supported by this server's encoder ({type(model).__name__}); "
                                "send late_chunking=false", param="late_chunking")  # fmt: skip


def _units(model: Encoder, request: EmbeddingRequest, decoded: list) -> tuple[list[Unit], list[int]]:
    """The batcher's units of a request and their positions in its input (one solo unit for late chunking)."""
    loop = asyncio.get_running_loop()
    texts = [text for _, text in request.texts]
    options = (request.task, request.prompt, request.dim)
    if request.late_chunking:
        unit = Unit(LATE, texts, *options, None, loop.create_future(), sum(map(len, texts)),
                    sum(map(text_cost, texts)), solo=True)  # fmt: skip
        return [unit], [request.texts[0][0]]
    units = [Unit("text", text, *options, None, loop.create_future(), len(text), text_cost(text)) for text in texts]
    within, factor = request.max_pixels or model.pixels.max_pixels, model.pixels.factor  # the resize's budget
    units += [Unit("image", image, *options, request.max_pixels, loop.create_future(), image.width * image.height * 3,
                   image_cost(image.width, image.height, within, factor)) for _, image in decoded]  # fmt: skip
    return units, [i for i, _ in request.texts] + [i for i, _ in decoded]


def _decode_images(model: Encoder, images: list[tuple[int, bytes]], max_pixels: int | None, limits: Limits) -> list:
    """Check sizes, decode fully and check the resize, so no bad image ever reaches a shared batch."""
    from ..images import image_size, load_rgb

    decoded = []
    for index, data in images:
        try:
            width, height = image_size(data, index)
            if width * height > limits.max_image_pixels:
                limit = limits.max_image_pixels
                raise RequestError(413, f"input {index}: {width}x{height} pixels; the limit is {limit}", param="input")
            image = load_rgb(data, index, limit=limits.max_image_pixels)  # the server's own limit decides
            ImagePreprocessor(model.pixels).grid(width, height, max_pixels=max_pixels)
        except ImageLoadError as exc:
            raise RequestError(400, f"input {index}: {exc.reason}", param="input") from None
        except ValueError as exc:  # aspect ratio
            raise RequestError(400, f"input {index}: {exc}", param="input") from None
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
        raise RequestError(400, f"input {index}: cannot fetch image: {exc}", param="input") from None
    if len(response.content) > limits.max_body_bytes:
        raise RequestError(413, f"input {index}: image larger than {limits.max_body_bytes} bytes", param="input")
    return response.content
