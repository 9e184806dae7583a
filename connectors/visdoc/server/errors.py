"""Error answers of the embedding API: OpenAI's error shape, with Jina's ``detail`` beside it.

Every error under ``/v1/`` is ``{"error": {"message", "type", "param", "code"}, "detail": message}``:
the OpenAI SDK reads ``error`` (its exceptions then say the reason, and ``param``/``code``), Jina
clients and visdoc's own :class:`~visdoc.encoder.remote.RemoteJinaV4` read ``detail``. ``type`` is
``invalid_request_error`` for a 4xx, ``authentication_error`` for 401, ``rate_limit_error`` for
429 and ``server_error`` for a 5xx. Routes outside ``/v1/`` (the search page) keep their own format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

API_PREFIX = "/v1/"


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The JSON of an error answer (see the module's docstring)."""
    error = {"message": message, "type": error_type(status), "param": param, "code": code}
    return {"error": error, "detail": message}


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    return JSONResponse(error_body(status, message, param=param, code=code), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, on_error: Callable[[int], None]) -> None:
    """Answer ``/v1/`` routes' HTTP errors (404, 405, ...), request-validation errors and crashes in
    the API's error shape, calling ``on_error(status)``; other paths keep the handlers they had."""
    previous_http = app.exception_handlers.get(StarletteHTTPException, http_exception_handler)
    previous_invalid = app.exception_handlers.get(RequestValidationError, request_validation_exception_handler)

    def ours(request: Request) -> bool:
        return request.url.path.startswith(API_PREFIX)

    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if not ours(request):
            return await previous_http(request, exc)
        on_error(exc.status_code)
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return error_response(exc.status_code, message, code=codes.get(exc.status_code),
                              headers=getattr(exc, "headers", None))  # fmt: skip

    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        if not ours(request):
            return await previous_invalid(request, exc)
        on_error(422)
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
        message = f"{'.'.join(where) or 'request'}: {first.get('msg', 'invalid request')}"  # never echo the input
        return error_response(422, message, param=where[-1] if where else None)

    async def crash(request: Request, exc: Exception) -> Any:
        if not ours(request):
            return PlainTextResponse("Internal Server Error", status_code=500)
        on_error(500)  # Starlette re-raises the exception after this answer: the server logs it
        return error_response(500, f"internal server error ({type(exc).__name__}); see the server's log")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crash)
