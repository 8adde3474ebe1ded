"""Errors in OpenAI's JSON shape, so SDKs raise the right exception with our message."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_error", 503: "service_unavailable"}


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


_DOCUMENTED = {400: "Invalid request: the message names the parameter and the fix",
               401: "Missing, unknown or revoked API key",
               404: "No such model (or not one of this route's task)",
               429: "The key's rate limit or token quota, or the model's queue, is full; see Retry-After",
               503: "The box is not ready (loading, self-test failed) or an engine failed; see Retry-After"}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route: the error statuses it really gives, all in OpenAI's shape."""
    return {code: {"model": ErrorResponse, "description": _DOCUMENTED[code]} for code in codes}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> ErrorResponse:
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")  # it may echo client text
    return ErrorResponse(error=ErrorInfo(message=message, type=_TYPES.get(status, "server_error"), param=param,
                                         code=code))


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code).model_dump(), status_code=status, headers=headers)


def _loc(loc: tuple) -> str:
    parts = [p for p in loc if p not in ("body",)]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.param, exc.code, exc.headers)


async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    err = exc.errors()[0]
    where = _loc(tuple(err.get("loc", ())))
    if err.get("type") == "json_invalid":
        return error_response(400, "request body is not valid JSON", None, "invalid_json")
    if err.get("type") == "missing":
        return error_response(400, f"'{where}' is a required property", where or None, "missing_required_parameter")
    value = err.get("input")
    shown = repr(value) if not isinstance(value, (dict, list)) or len(repr(value)) < 80 else type(value).__name__
    return error_response(400, f"invalid value for '{where}': {shown} ({err.get('msg')})", where or None,
                          "invalid_value")


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404:
        message = "unknown route; see /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings"
    elif exc.status_code == 405:
        message = "method not allowed on this route"
    return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return error_response(500, f"internal error ({type(exc).__name__}); the box logged it", code="internal_error")


def install(app) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
