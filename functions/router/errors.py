"""Error responses: every failure the router answers itself is a JSON body.

Two shapes, chosen by the route (`error_style`):

- `v2` (Open Inference Protocol, KServe v1 `:predict`, everything else):
  `{"error": "message"}`.
- `openai` (every other `/v1/...` path): OpenAI's
  `{"error": {"message", "type", "param", "code"}}`, so that OpenAI SDKs expose
  `code`, `type` and `param` (`openai.NotFoundError.code == "model_not_found"`).

`RouteError` carries an HTTP status, a one-line message and optionally the OpenAI `param`
and `code`; `send_error` writes an error on a raw ASGI connection. Error *decisions*
(which status for which condition) live where the condition is detected; this module
only encodes them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from starlette.types import Send

from mpfn.routing.errors import RouteError

__all__ = [
    "ErrorStyle",
    "RouteError",
    "encode_error",
    "error_body",
    "error_style",
    "json_body",
    "openai_error",
    "route_error_body",
    "send_error",
    "send_json",
]

JSON_TYPE = b"application/json"
ErrorStyle = Literal["v2", "openai"]
PREDICT_SUFFIX = ":predict"  # KServe v1 `POST /v1/models/{m}:predict`: KServe errors

# OpenAI error `type` and default `code` by HTTP status (4xx/5xx not listed: the class's).
_OPENAI_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", None),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("requests", "rate_limit_exceeded"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}


def error_style(path: str) -> ErrorStyle:
    """The error shape of a route path: `openai` for the OpenAI API under `/v1/`."""
    if path.startswith("/v1/") and not path.endswith(PREDICT_SUFFIX):
        return "openai"
    return "v2"


def openai_error(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object for an answer with `status` (`code` defaults by status)."""
    kind, default_code = _OPENAI_KINDS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {"message": message, "type": kind, "param": param, "code": code or default_code}


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def encode_error(
    style: ErrorStyle,
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    """The body of an error answer in `style`."""
    if style == "openai":
        return json_body({"error": openai_error(status, message, param=param, code=code)})
    return error_body(message)


def route_error_body(style: ErrorStyle, exc: RouteError) -> bytes:
    """The body answering `exc` in `style`."""
    return encode_error(style, exc.status, exc.message, param=exc.param, code=exc.code)


def json_body(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", JSON_TYPE), (b"content-length", str(len(body)).encode())]
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, message: str, style: ErrorStyle = "v2") -> None:
    await send_json(send, status, encode_error(style, status, message))
