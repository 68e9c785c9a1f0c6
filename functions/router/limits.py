"""Tensor element limits of v2 infer requests, checked without decoding any tensor.

The number of elements a request declares is the sum over its inputs of the product of
their `shape`. Binary-tensor bodies have only their JSON header
(`Inference-Header-Content-Length` bytes) parsed. JSON bodies up to `SMALL_BODY` bytes
are parsed with orjson (faster than anything else at that size); larger ones are
scanned once for their `"shape": [...]` members (a regular expression over the raw
bytes; JSON can only spell the key differently with a `\\u` escape, and a body containing
one is parsed in full instead). gzip and deflate bodies are inflated, bounded by the
body-size limit, to be checked (they are still forwarded as received); other encodings
are refused. Over the limit: 413; a header or a shape that cannot be read: 400. This
counts; it does not validate the request (the backend does). The body is never
re-encoded.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import orjson

from mpfn.functions.router.errors import RouteError

# No look-behind for the escaping backslash: it would cost the literal-prefix search.
_SHAPE = re.compile(rb'"shape"\s*:\s*\[([^\]]*)\]')
_BACKSLASH = 0x5C
SMALL_BODY = 64 * 1024
_BEYOND_INT64 = float(2**63)
_MAX_DIGITS = 18  # a dimension with more digits is over any limit
ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def over_limit(limit: int) -> RouteError:
    return RouteError(
        413,
        f"request declares more than {limit} tensor elements",
        rejection="too_many_elements",
    )


def _bad(message: str) -> RouteError:
    return RouteError(400, message)


def _product(dims: list[Any], limit: int) -> int:
    n = 1
    for d in dims:
        if isinstance(d, float) and d >= _BEYOND_INT64 and d.is_integer():
            d = limit + 1  # an integer too large for orjson's int
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            raise _bad("tensor shapes must be lists of non-negative integers")
        n = min(n * d, limit + 1)  # capped: a later 0 still makes it 0
    return n


def _decoded(text: bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _bad("inference request header is not valid JSON") from None


def _counted(payload: Any, limit: int) -> int:
    """Elements of the inputs of a decoded v2 request (inputs without a shape list are
    left to the backend to refuse)."""
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list):
        return 0
    total = 0
    for tensor in inputs:
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if isinstance(shape, list):
            total += _product(shape, limit)
            if total > limit:
                break
    return total


def _scanned(body: bytes, limit: int) -> int | None:
    """Elements from the raw JSON text; None when a shape needs a real parse."""
    total = 0
    for match in _SHAPE.finditer(body):
        start = match.start()
        if start and body[start - 1] == _BACKSLASH:
            continue  # `\"shape\"` inside a string
        inner = match.group(1).strip()
        n = 1  # "shape": [] is a scalar
        for raw in inner.split(b",") if inner else ():
            digits = raw.strip()
            if not digits.isdigit():
                return None
            d = limit + 1 if len(digits) > _MAX_DIGITS else int(digits)
            n = min(n * d, limit + 1)
        total += n
        if total > limit:
            return total
    return total


def count_elements(body: bytes, header_length: int | None, limit: int) -> int:
    """Elements the request declares (stops counting once over `limit`)."""
    if header_length is not None:
        if header_length > len(body):
            raise _bad(
                f"Inference-Header-Content-Length {header_length} exceeds the body "
                f"of {len(body)} bytes"
            )
        return _counted(_decoded(body[:header_length]), limit)
    if len(body) <= SMALL_BODY:
        try:
            return _counted(orjson.loads(body), limit)
        except orjson.JSONDecodeError:
            pass  # not JSON: count what a scan finds, the backend answers the rest
    elif b"\\u" in body:
        return _counted(_decoded(body), limit)
    scanned = _scanned(body, limit)
    return _counted(_decoded(body), limit) if scanned is None else scanned


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """The decoded body of a gzip/deflate request, at most `limit` bytes (413 above)."""
    wbits = ENCODINGS.get(encoding.strip().lower())
    if wbits is None:
        raise RouteError(415, f"unsupported Content-Encoding {encoding!r} (gzip, deflate)")
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(body, limit + 1)
    except zlib.error:
        raise _bad(f"request body is not valid {encoding}") from None
    if len(out) > limit or decoder.unconsumed_tail:
        raise RouteError(
            413,
            f"decoded request body exceeds the {limit}-byte limit",
            rejection="too_large",
        )
    return out


def check_elements(body: bytes, headers: dict[str, str], limit: int, max_body_bytes: int) -> None:
    """RouteError 413/400/415 unless the v2 request declares at most `limit` elements."""
    encoding = headers.get("content-encoding")
    if encoding and encoding.strip().lower() != "identity":
        body = inflate(body, encoding, max_body_bytes)
    raw_length = headers.get("inference-header-content-length")
    header_length = None
    if raw_length is not None:
        try:
            header_length = int(raw_length)
        except ValueError:
            raise _bad("Inference-Header-Content-Length is not a number") from None
        if header_length < 0:
            raise _bad("Inference-Header-Content-Length is negative")
    n = count_elements(body, header_length, limit)
    if n > limit:
        raise over_limit(limit)
