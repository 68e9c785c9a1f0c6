"""AWS Lambda entry point of the router (Mangum).

Serves Function URL (payload v2), API Gateway HTTP and REST events, including base64
binary bodies. Any other event, such as an EventBridge keep-warm ping, gets a small JSON
acknowledgement after the router's lazy upkeep (state refresh, usage flush, metrics as
CloudWatch embedded-metric-format lines on stdout or a Pushgateway push) ran; the
handler never raises. The app is built on first use, configured from `MPFN_STATE` and
`MPFN_ROUTER_*` variables; Lambda has no lifespan, so upkeep is lazy.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, TypeGuard

from mangum import Mangum

from mpfn.functions.router.asgi import RouterApp, create_app

log = logging.getLogger("mpfn.router")

Handler = Callable[[object, Any], dict[str, Any]]  # (event: any JSON value, context)


def is_http_event(event: object) -> TypeGuard[dict[str, Any]]:
    """True for the HTTP event shapes Mangum serves (URL, API Gateway, ALB, edge)."""
    if not isinstance(event, dict):
        return False
    if "requestContext" in event:
        return True
    records = event.get("Records")
    return bool(records) and isinstance(records, list) and "cf" in records[0]


def _error_response(status: int, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"error": message}),
        "isBase64Encoded": False,
    }


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
                return mangum(event, context)
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
            _handler = make_handler(create_app())
        except Exception as exc:
            log.exception("router failed to start")
            return _error_response(503, f"router failed to start: {exc}")
    return _handler(event, context)
