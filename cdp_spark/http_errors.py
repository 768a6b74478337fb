"""JSON errors shared by the HTTP services (the Profile API and the collector).

Every error body is ``{"code": ..., "message": ...}``. Messages are fixed texts: they never echo request data
(which may hold PII) and never carry a stack trace.

Example:
    >>> error(404, "not_found", "no such profile").body
    b'{"code":"not_found","message":"no such profile"}'
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

_ROUTING_CODES = {404: "not_found", 405: "method_not_allowed"}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response.

    Example:
        >>> error(429, "rate_limited", "slow down", {"Retry-After": "1"}).headers["retry-after"]
        '1'
    """
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, *, log: logging.Logger, internal_message: str = "internal error") -> None:
    """Answer routing errors (unknown path 404, wrong method 405, ...) and unexpected exceptions as JSON errors.

    An unexpected exception is logged by its type only (its text may hold request data).

    Example:
        >>> app = FastAPI()
        >>> install_error_handlers(app, log=logging.getLogger("svc"), internal_message="internal error; retry later")
    """

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _ROUTING_CODES.get(exc.status_code, "http_error")
        return error(exc.status_code, code, code.replace("_", " "), getattr(exc, "headers", None))  # keeps Allow

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - defensive
        log.error("unexpected error: %s", type(exc).__name__)
        return error(500, "internal_error", internal_message)
