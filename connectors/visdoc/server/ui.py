"""The visual search page: static assets under ``/ui``, its JSON API under ``/ui/api``, files under ``/files``.

Mounted on the embedding server (``visdoc serve``) or served alone (``visdoc ui``). With an API
key, every ``/ui/api`` call needs ``Authorization: Bearer <key>``; page images and source files
also accept a short-lived signed cookie that ``POST /ui/api/session`` sets (an ``<img>`` cannot
send headers). The page itself and its assets load without a key. Without a key, ``/ui/api`` and
``/files`` answer only a client on this machine (a loopback peer address, whatever the bind
address) that addresses it by a loopback name (``Host: localhost``, ``127.0.0.1`` or ``[::1]``), so
that neither another machine nor another site's page (DNS rebinding) can reach them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, field_validator

from .jobs import UPLOAD_SUFFIXES, Jobs
from .library import Library
from .protocol import bearer_matches
from .routes import (
    ASSET,
    COLLECTIONS,
    CONFIG,
    DOCUMENTS,
    FILES_PREFIX,
    HEALTH,
    HEATMAP,
    JOB,
    JOBS,
    PAGE,
    PAGE_IMAGE,
    PAGE_SLASH,
    ROOT,
    SEARCH,
    SESSION,
    SOURCE_FILE,
    UI_PREFIX,
    UPLOADS,
)
from .validation import UIError, check_text, invalid_unicode, is_loopback_address

if TYPE_CHECKING:
    from ..encoder import Encoder
    from .settings import UISettings

COOKIE = "visdoc_session"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "via")
SESSION_S = 3600
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SearchBody(BaseModel):
    query: str = Field(min_length=1, max_length=2000)
    k: int = Field(12, ge=1, le=50)
    documents: list[str] = Field(default_factory=list, max_length=200)
    mode: str = "rerank"  # one of visdoc.store.SEARCH_MODES

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        from ..store import SEARCH_MODES

        if mode not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {mode[:40]!r}: use one of {', '.join(SEARCH_MODES)}")
        return mode


def _asset(name: str) -> bytes:
    return resources.files("visdoc.server").joinpath("static", name).read_bytes()


class _Auth:
    """Bearer key checks, and signed session cookies for images and files."""

    def __init__(self, api_key: str | None) -> None:
        self.api_key = api_key
        self._secret = secrets.token_bytes(32)

    def _sign(self, expires: int) -> str:
        return hmac.new(self._secret, str(expires).encode(), hashlib.sha256).hexdigest()

    def session_value(self) -> str:
        expires = int(time.time()) + SESSION_S
        return f"{expires}.{self._sign(expires)}"

    def _bearer_ok(self, request: Request) -> bool:
        return bearer_matches(request.headers.get("authorization", ""), self.api_key or "")

    def _cookie_ok(self, request: Request) -> bool:
        expires, _, signature = request.cookies.get(COOKIE, "").partition(".")
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return secrets.compare_digest(signature.encode(), self._sign(int(expires)).encode())

    def key(self, request: Request) -> None:
        if not self.api_key:
            loopback_only(request)
        elif not self._bearer_ok(request):
            raise UIError(401, "missing or wrong API key (send 'Authorization: Bearer <key>')")

    def key_or_cookie(self, request: Request) -> None:
        if not self.api_key:
            loopback_only(request)
        elif not (self._bearer_ok(request) or self._cookie_ok(request)):
            raise UIError(401, "missing or wrong API key or session")


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without its port or IPv6 brackets, lowercased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


def loopback_only(request: Request) -> None:
    """Without a key, answer only a loopback peer (``request.client``; none: refused) that addresses
    this machine by a loopback name.

    The peer check keeps other machines out, whatever ``Host`` they send, when the server listens on
    another interface. The ``Host`` check stops DNS rebinding: a hostile site whose name re-resolves
    to 127.0.0.1 sends its own name as ``Host``, and its page counts as same-origin to the browser.
    """
    if any(name in request.headers for name in PROXY_HEADERS):  # a proxy on this machine relays other machines
        raise UIError(403, "without an API key the search page does not answer requests relayed by a proxy; "
                           "start the server with --api-key to serve it through one")  # fmt: skip
    peer = request.client.host if request.client else None
    if not is_loopback_address(peer) or host_name(request.headers.get("host", "")) not in LOOPBACK_HOSTS:
        raise UIError(403, "without an API key the search page answers only requests from this machine "
                           "(a loopback address) to localhost, 127.0.0.1 or [::1]; start the server with "
                           "--api-key for remote use")  # fmt: skip


def same_origin(request: Request) -> None:
    """Refuse writes that another site's page sends (matters most when no key is set)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise UIError(403, "cross-site request refused")


class ServerTiming:
    """Adds ``Server-Timing: app;dur=<ms>`` to the page's responses (``/ui``, ``/files``). A plain
    ASGI wrapper that passes every other request straight through, so the embedding API on the
    same server pays nothing for it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith((UI_PREFIX, FILES_PREFIX)):
            return await self.app(scope, receive, send)
        start = time.perf_counter()

        async def send_timed(message: dict) -> None:
            if message["type"] == "http.response.start":
                timing = f"app;dur={1000 * (time.perf_counter() - start):.2f}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", timing)]}
            await send(message)

        await self.app(scope, receive, send_timed)


@dataclass
class UI:
    """The page's state on a server: its collections and its upload queue."""

    library: Library
    jobs: Jobs

    def close(self) -> None:
        """Stop the upload worker (a running ingestion stops after its batch), then close the stores."""
        self.jobs.close()
        self.library.close()


def install_ui(app: FastAPI, model: Encoder, settings: UISettings, *, api_key: str | None = None) -> UI:
    """Add the search page's routes to ``app``; close the returned :class:`UI` on shutdown."""
    library = Library(model, settings)
    jobs = Jobs(library)
    auth = _Auth(api_key)
    index = _asset("index.html")
    assets = {name: _asset(name) for name in ASSETS}
    keyed = [Depends(auth.key)]
    router = APIRouter()

    @app.exception_handler(UIError)
    async def ui_error(request: Request, exc: UIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problem = invalid_unicode(exc.errors())  # FastAPI's own answer echoes the input: not as UTF-8
        if problem is None:
            return await request_validation_exception_handler(request, exc)
        return JSONResponse({"detail": problem}, status_code=422)

    app.add_middleware(ServerTiming)

    @router.get(ROOT, include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(PAGE_SLASH)

    @router.get(PAGE, include_in_schema=False)
    @router.get(PAGE_SLASH, include_in_schema=False)
    def page() -> Response:
        return Response(index, media_type="text/html; charset=utf-8",
                        headers=SECURITY_HEADERS | {"Cache-Control": "no-cache"})  # fmt: skip

    @router.get(ASSET, include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in assets:  # a fixed list: nothing is looked up on disk by a client's path
            raise UIError(404, "not found")
        return Response(assets[name], media_type=ASSETS[name],
                        headers=SECURITY_HEADERS | {"Cache-Control": "no-cache"})  # fmt: skip

    @router.get(CONFIG, dependencies=keyed)
    def config() -> dict[str, Any]:
        return {
            "model": model.name,
            "collection": settings.collection,
            "max_upload_bytes": settings.max_upload_bytes,
            "upload_suffixes": list(UPLOAD_SUFFIXES),
            "auth": bool(api_key),
        }

    @router.post(SESSION, dependencies=[*keyed, Depends(same_origin)])
    def session(request: Request) -> Response:
        response = Response(status_code=204)
        if api_key:
            response.set_cookie(COOKIE, auth.session_value(), max_age=SESSION_S, path="/", httponly=True,
                                samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
        return response

    @router.get(COLLECTIONS, dependencies=keyed)
    def collections() -> list[dict[str, Any]]:
        return library.collections()

    @router.get(DOCUMENTS, dependencies=keyed)
    def documents(name: str) -> dict[str, Any]:
        return library.documents(name)

    @router.post(SEARCH, dependencies=[*keyed, Depends(same_origin)])
    def search(name: str, body: SearchBody) -> dict[str, Any]:
        start = time.perf_counter()
        check_text(body.query, "query")
        hits = library.search(name, body.query, k=body.k, documents=tuple(body.documents), mode=body.mode)
        return {"results": hits, "ms": round(1000 * (time.perf_counter() - start), 1)}

    @router.get(HEATMAP, dependencies=keyed)
    def heatmap(name: str, point_id: str, q: Annotated[str, Query(min_length=1, max_length=2000)]) -> dict:
        return library.heatmap(name, point_id, check_text(q, "q"))

    @router.get(PAGE_IMAGE, dependencies=[Depends(auth.key_or_cookie)])
    def image(name: str, point_id: str, size: str = "thumb") -> FileResponse:
        path = library.page_image(name, point_id, size)
        headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
        return FileResponse(path, media_type="image/webp", headers=headers)

    @router.post(UPLOADS, dependencies=[*keyed, Depends(same_origin)])
    async def upload(name: str, request: Request, filename: Annotated[str, Query(max_length=255)]) -> dict:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/octet-stream":
            raise UIError(415, "send the file as the body, Content-Type: application/octet-stream")
        declared = request.headers.get("content-length")
        size = int(declared) if declared and declared.isdigit() else None
        job = await jobs.receive(name, filename, request.stream(), size)
        return job.to_json()

    @router.get(JOBS, dependencies=keyed)
    def job_list() -> list[dict[str, Any]]:
        return jobs.list()

    @router.get(JOB, dependencies=keyed)
    def job(job_id: str) -> dict[str, Any]:
        return jobs.get(job_id).to_json()

    @router.get(SOURCE_FILE, dependencies=[Depends(auth.key_or_cookie)])
    def source_file(name: str, document_id: str, file_name: str) -> FileResponse:
        path, media_type = library.source_file(name, document_id, file_name)
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
        return FileResponse(path, media_type=media_type, filename=path.name, content_disposition_type="inline",
                            headers=headers)  # fmt: skip

    app.include_router(router)
    app.state.search_page = ui = UI(library, jobs)
    return ui


def create_ui_app(model: Encoder, settings: UISettings, *, api_key: str | None = None) -> FastAPI:
    """The search page alone (``visdoc ui``): no embedding endpoints."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        ui: UI = app.state.search_page
        if settings.preload:
            await asyncio.to_thread(ui.library.preload)
        yield
        await asyncio.to_thread(ui.close)

    app = FastAPI(title="visdoc search page", lifespan=lifespan)

    @app.get(HEALTH)
    def health() -> dict[str, str]:
        return {"status": "ok", "model": model.name}

    install_ui(app, model, settings, api_key=api_key)
    return app
