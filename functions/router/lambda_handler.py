"""AWS Lambda entry point of the router (Mangum).

Serves Function URL (payload v2), API Gateway HTTP and REST events, including base64
binary bodies. Any other event, such as an EventBridge keep-warm ping, gets a small JSON
acknowledgement after the router's lazy upkeep (state refresh, usage flush, metrics as
CloudWatch embedded-metric-format lines on stdout or a Pushgateway push) ran; the
handler never raises. The app is built on first use, configured from `MPFN_STATE` and
`MPFN_ROUTER_*` variables; Lambda has no lifespan, so upkeep is lazy.

Lambda's limits set two defaults (`lambda_settings`; a variable still overrides them).
The Function URL is BUFFERED (Mangum cannot stream), so `streaming` is off: an OpenAI
request asking for `"stream": true` gets a 400 instead of a stream that would arrive all
at once. An invocation carries at most 6 MB each way (6,291,556 bytes of event or
response JSON), so the largest body is 6,000,000 bytes (413 above), which leaves room
for the event's headers and context. The limit applies to the body as decoded: a binary
body arrives base64-encoded (4/3 of its size), so Lambda itself refuses one above about
4.7 MB before the router runs. An answer too large for Lambda's response payload becomes
a 502 JSON error saying so, instead of a failed invocation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from mangum import Mangum

from mpfn.functions.router.asgi import RouterApp, create_app
from mpfn.functions.router.settings import RouterSettings

log = logging.getLogger("mpfn.router")

Handler = Callable[[object, Any], dict[str, Any]]  # (event: any JSON value, context)

PAYLOAD_LIMIT = 6 * 1024 * 1024 + 100  # bytes of event or response JSON per invocation
LAMBDA_MAX_BODY_BYTES = 6_000_000  # request body, decoded; the rest is the envelope's
LAMBDA_DEFAULTS = {
    "MPFN_ROUTER_STREAMING": "off",  # a buffered Function URL: nothing streams
    "MPFN_ROUTER_MAX_BODY_BYTES": str(LAMBDA_MAX_BODY_BYTES),
}
SURELY_FITS = 1_000_000  # a body this short fits even if JSON escaping grows it 6-fold
RELAYED_HEADERS = ("x-mpfn-pool", "x-mpfn-route-reason")


def lambda_settings(env: Mapping[str, str] | None = None) -> RouterSettings:
    """The router's settings under this handler: `MPFN_ROUTER_*` variables of `env`
    (default `os.environ`) over Lambda's defaults (`LAMBDA_DEFAULTS`)."""
    env = os.environ if env is None else env
    return RouterSettings.from_env({**LAMBDA_DEFAULTS, **{k: v for k, v in env.items() if v}})


def is_http_event(event: object) -> TypeGuard[dict[str, Any]]:
    """True for the HTTP event shapes Mangum serves (URL, API Gateway, ALB, edge)."""
    if not isinstance(event, dict):
        return False
    if "requestContext" in event:
        return True
    records = event.get("Records")
    return bool(records) and isinstance(records, list) and "cf" in records[0]


def _error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {**(headers or {}), "content-type": "application/json"},
        "body": json.dumps({"error": message}),
        "isBase64Encoded": False,
    }


def payload_size(response: dict[str, Any]) -> int:
    """Bytes of `response` as Lambda's response payload (0 when it surely fits)."""
    body = response.get("body")
    if not isinstance(body, str) or len(body) < SURELY_FITS:
        return 0
    return len(json.dumps(response, ensure_ascii=False).encode())


def fit_payload(response: dict[str, Any]) -> dict[str, Any]:
    """`response`, or a 502 JSON error when it is too large to leave Lambda."""
    size = payload_size(response)
    if size <= PAYLOAD_LIMIT:
        return response
    log.warning("answer of %d bytes is over Lambda's response payload limit", size)
    headers = response.get("headers") or {}
    kept = {name: str(headers[name]) for name in RELAYED_HEADERS if name in headers}
    message = (
        f"the answer ({size} bytes as a Lambda response) exceeds AWS Lambda's 6 MB response "
        "payload limit; ask for less, or use a router without this limit "
        "(Cloud Run, Kubernetes, uvicorn)"
    )
    return _error_response(502, message, kept)


def event_loop() -> asyncio.AbstractEventLoop:
    """The loop Mangum runs on; a fresh one when none is set or it was closed."""
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop


def make_handler(app: RouterApp) -> Handler:
    """A Lambda handler serving `app`."""
    mangum = Mangum(app, lifespan="off")

    def handler(event: object, context: Any) -> dict[str, Any]:
        loop = event_loop()
        if is_http_event(event):
            try:
                return fit_payload(mangum(event, context))
            except Exception as exc:  # malformed event: answer, never raise
                log.exception("cannot serve event")
                return _error_response(502, f"cannot serve event: {type(exc).__name__}")
        ack: dict[str, Any] = {"ok": True, "event": "ignored"}
        if isinstance(event, dict):
            ack["event"] = str(event.get("detail-type") or event.get("source") or "unknown")
        try:
            ack["usage_written"] = loop.run_until_complete(app.maintain())
        except Exception as exc:
            log.exception("upkeep failed")
            ack["ok"] = False
            ack["error"] = f"{type(exc).__name__}: {exc}"
        return ack

    return handler


_handler: Handler | None = None


def handler(event: object, context: Any) -> dict[str, Any]:
    """The function's configured entry point (`mpfn.functions.router.lambda_handler.handler`)."""
    global _handler
    if _handler is None:
        try:
            _handler = make_handler(create_app(settings=lambda_settings()))
        except Exception as exc:
            log.exception("router failed to start")
            return _error_response(503, f"router failed to start: {exc}")
    return _handler(event, context)
