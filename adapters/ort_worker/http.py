"""Minimal ASGI plumbing for the worker: read a bounded request body, send a response.

Kept framework-free so the inference hot path pays for nothing it does not use.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from mpfn.adapters.ort_worker.errors import BodyTooLarge, ClientDisconnected, WorkerError
from mpfn.documents import TensorSpec
from mpfn.protocol import loads

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
OCTETS = b"application/octet-stream"
_WBITS = {b"gzip": 31, b"deflate": 15, b"x-gzip": 31}


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header `name` (lower-case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, decompressed per Content-Encoding, at most `limit` bytes."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(_too_large(limit))
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(_too_large(limit))
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = header(scope, b"content-encoding")
    if encoding is None or encoding.strip().lower() in (b"", b"identity"):
        return body
    return decompress(body, encoding.strip().lower(), limit)


def decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise WorkerError(
            f"unsupported Content-Encoding {encoding.decode('latin-1')!r} "
            "(use gzip, deflate or identity)",
            415,
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise WorkerError(
            f"request body is not valid {encoding.decode()} data: {exc}", 400
        ) from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(_too_large(limit) + " after decompression")
    return out


def _too_large(limit: int) -> str:
    return f"request body exceeds the limit of {limit} bytes"


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def json_body(doc: Any) -> bytes:
    return orjson.dumps(doc)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def require_method(method: str, *allowed: str) -> None:
    """405 unless `method` is one of `allowed`."""
    if method not in allowed:
        raise WorkerError(f"method {method} not allowed here (use {', '.join(allowed)})", 405)


def optional_json(body: bytes) -> dict[str, Any]:
    """An optional JSON object body: {} when empty, 400 when not a JSON object."""
    if not body.strip():
        return {}
    try:
        doc = loads(body)
    except ValueError as exc:
        raise WorkerError(f"invalid JSON body: {exc}", 400) from None
    if not isinstance(doc, dict):
        raise WorkerError("the request body must be a JSON object", 400)
    return doc


def tensor_spec(spec: TensorSpec) -> dict[str, Any]:
    """A tensor's v2 metadata object."""
    return {"name": spec.name, "datatype": spec.datatype, "shape": spec.shape}
