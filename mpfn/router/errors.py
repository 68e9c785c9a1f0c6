"""Error responses: every failure leaves the router as a JSON body `{"error": "..."}`.

`RouteError` carries an HTTP status and a one-line message; `send_error` writes it on a
raw ASGI connection. Error *decisions* (which status for which condition) live where the
condition is detected; this module only encodes them.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

JSON_TYPE = b"application/json"


class RouteError(Exception):
    """A request the router must refuse; `status` is the HTTP status to answer with,
    `reason` the `x-mpfn-route-reason` of the answer, `headers` any extra response
    headers (`WWW-Authenticate`, `Retry-After`) and `rejection` the
    `mpfn_router_rejections_total` reason, if it counts as one."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str = "",
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        rejection: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or f"not routed: {message}"[:200]
        self.headers = headers or []
        self.rejection = rejection


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
