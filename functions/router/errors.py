"""Error responses: every failure leaves the router as a JSON body `{"error": "..."}`.

`RouteError` carries an HTTP status and a one-line message; `send_error` writes it on a
raw ASGI connection. Error *decisions* (which status for which condition) live where the
condition is detected; this module only encodes them.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

from mpfn.routing.errors import RouteError

__all__ = ["RouteError", "error_body", "json_body", "send_error", "send_json"]

JSON_TYPE = b"application/json"


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


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


async def send_error(send: Send, status: int, message: str) -> None:
    await send_json(send, status, error_body(message))
