"""JSON errors shared by the HTTP services (the Profile API and the collector).

Every error body is ``{"code": ..., "message": ...}``. Messages are fixed texts: they never echo request data
(which may hold PII) and never carry a stack trace.

Example:
    >>> error(404, "not_found", "no such profile").body
    b'{"code":"not_found","message":"no such profile"}'
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ROUTING_CODES = {404: "not_found", 405: "method_not_allowed"}


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number beyond a double")
    return value


def _no_constant(_: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def strict_json(raw: bytes | str) -> Any:
    """``json.loads`` as RFC 8259 reads JSON: ``NaN``, ``Infinity`` and numbers that overflow a double (which Python
    reads as infinities) raise ValueError, like any other invalid JSON.

    Example:
        >>> strict_json(b'{"a": 1.5}')
        {'a': 1.5}
        >>> strict_json(b'[1e400]')
        Traceback (most recent call last):
        ValueError: a number beyond a double
    """
    return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)


def utf8_text(value: Any) -> bool:
    """Whether every string in parsed JSON (keys too) is Unicode text that UTF-8 can hold: JSON's ``"\\ud800"``
    escape gives a lone surrogate, which it cannot. Walks the value with a stack, not by recursion.

    Example:
        >>> utf8_text({"a": ["ok", "\\u00e9"]}), utf8_text({"a": ["x\\ud800"]})
        (True, False)
    """
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return True


class ApiError(Exception):
    """A refused request: its HTTP status and the body's ``code`` and ``message``.

    Example:
        >>> ApiError(404, "not_found", "no such profile").status
        404
    """

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response.

    Example:
        >>> error(429, "rate_limited", "slow down", {"Retry-After": "1"}).headers["retry-after"]
        '1'
    """
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


class CatchAll:
    """ASGI middleware: an exception escaping the app becomes a JSON 500 and one log line with its type only.

    Nothing escapes to the server, so uvicorn never logs a traceback (whose text may hold request data), and the
    client gets ``{"code": "internal_error", ...}`` without any text from the request. Starlette's own handler for
    ``Exception`` answers too, but then re-raises to the server.

    Example:
        >>> app = FastAPI()
        >>> app.add_middleware(CatchAll, log=logging.getLogger("svc"), message="internal error")
    """

    def __init__(self, app: ASGIApp, *, log: logging.Logger, message: str):
        self.app, self.log, self.message = app, log, message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self.log.error("unexpected error: %s", type(exc).__name__)
            if not started:
                await error(500, "internal_error", self.message)(scope, receive, send)


def install_error_handlers(app: FastAPI, *, log: logging.Logger, internal_message: str = "internal error") -> None:
    """Answer routing errors (unknown path 404, wrong method 405, ...) and unexpected exceptions as JSON errors.

    An unexpected exception is logged by its type only (its text may hold request data), see `CatchAll`.

    Example:
        >>> app = FastAPI()
        >>> install_error_handlers(app, log=logging.getLogger("svc"), internal_message="internal error; retry later")
    """

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _ROUTING_CODES.get(exc.status_code, "http_error")
        return error(exc.status_code, code, code.replace("_", " "), getattr(exc, "headers", None))  # keeps Allow

    app.add_middleware(CatchAll, log=log, message=internal_message)
