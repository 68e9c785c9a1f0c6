"""The router's one request pipeline: every request passes the same steps, once.

1. **Path**: the route path is the request path with the ASGI `root_path` taken off, as
   the framework routes it (servers differ on whether `path` carries `root_path`; both
   conventions give the same route path).
2. **Freshness**: on hosts without background tasks (Lambda) the snapshot is refreshed
   here when its TTL has expired, before any route reads it.
3. **Keys**: with `auth=keys`, model and OpenAI paths need a key, checked against its
   model scope when the path names a model (`/metrics` too with `metrics_auth=keys`).
4. **Dispatch**: forwarding routes (v2 infer, OpenAI POSTs) go to `ForwardingRoutes`,
   which applies the body and tensor limits and forwards; every other route to the
   FastAPI app, which sees the key through `request.state.api_key`.

Forwarded requests take step 3 inside `ForwardingRoutes`, so that a refused request is
counted and traced like any other routed request; nothing else checks keys. Any
unexpected failure before an answer started becomes a 502 JSON error. Errors are
OpenAI-shaped on OpenAI paths (`mpfn.functions.router.errors.error_style`).

Every answer that is not 2xx is logged at WARNING on `mpfn.router`: method, path (never
the query string), status, the error's message and the route reason, if any; answers
with the same method, path, status and message are logged at most once a second, the
next line saying how many were left out (`LogThrottle`). Request headers (credentials)
are never logged.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mpfn.functions.router.errors import (
    RouteError,
    encode_error,
    error_style,
    route_error_body,
    send_error,
    send_json,
)
from mpfn.functions.router.forward import REASON_HEADER, header_safe
from mpfn.functions.router.hotpath import ForwardingRoutes, match_route
from mpfn.functions.router.logthrottle import LogThrottle
from mpfn.functions.router.runtime import RouterRuntime

log = logging.getLogger("mpfn.router")

API_KEY_STATE = "api_key"  # `request.state.api_key`: the verified key (None: keys off)
LOGGED_BODY_BYTES = 2048  # of an error answer's body, read for its message


def route_path(scope: Scope) -> str:
    """The path routes are matched on: `path` without the `root_path` prefix, if any.

    Like Starlette's own routing: a `path` that does not start with `root_path` already
    lacks it (the older ASGI convention)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    rest = path[len(root) :]
    if not rest:
        return "/"
    return rest if rest.startswith("/") else path


class RouterApp:
    """The outermost ASGI callable; `runtime` exposes the router's live state."""

    def __init__(self, runtime: RouterRuntime, api: ASGIApp) -> None:
        self.runtime = runtime
        self.api = api
        self.forwarding = ForwardingRoutes(runtime)
        self.throttle = LogThrottle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)  # lifespan
            return
        answer = ErrorAnswer()

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.started(message)
            elif answer.status:
                answer.read(message)
            await send(message)

        try:
            await self._serve(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            if not answer.status:
                style = error_style(route_path(scope))
                await send_error(tracking_send, 502, f"router error: {type(exc).__name__}", style)
        finally:
            if answer.status:
                answer.log(scope["method"], scope["path"], self.throttle)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        runtime = self.runtime
        if not runtime.background:
            await runtime.tick()
        route = match_route(scope["method"], path)
        if route is not None:
            await self.forwarding.handle(route, scope, receive, send)
            return
        try:
            key = await runtime.admit(path, scope["headers"])
        except RouteError as exc:
            if exc.rejection:
                runtime.metrics.reject(exc.rejection)
            body = route_error_body(error_style(path), exc)
            await send_json(send, exc.status, body, exc.headers)
            return
        if match_route("POST", path) is not None:  # a forwarding route, another method
            message = f"method {scope['method']} not allowed on {path}; use POST"
            body = encode_error(error_style(path), 405, message)
            await send_json(send, 405, body, [(b"allow", b"POST")])
            return
        scope.setdefault("state", {})[API_KEY_STATE] = key
        await self.api(scope, receive, send)

    async def maintain(self) -> int:
        """Refresh when due and flush usage now; for hosts that ping between requests.

        Returns the number of usage documents written.
        """
        await self.runtime.tick()
        return await self.runtime.flush()


class ErrorAnswer:
    """Watches one answer; when it is not 2xx, keeps its status, route reason and the
    start of its body, to log it."""

    __slots__ = ("body", "reason", "status")

    def __init__(self) -> None:
        self.status = 0  # 0: no answer started; else its status, kept only when not 2xx
        self.reason = ""
        self.body = b""

    def started(self, message: Message) -> None:
        status: int = message["status"]
        if 200 <= status < 300:
            return
        self.status = status
        for name, value in message.get("headers", ()):
            if name == REASON_HEADER:
                self.reason = value.decode("latin-1")

    def read(self, message: Message) -> None:
        if len(self.body) < LOGGED_BODY_BYTES:
            self.body += bytes(message.get("body", b""))[: LOGGED_BODY_BYTES - len(self.body)]

    def log(self, method: str, path: str, throttle: LogThrottle | None = None) -> None:
        left_out = 0 if throttle is None else throttle.admit(method, path, self.status, self.body)
        if left_out is None:
            return
        message = header_safe(error_message(self.body), 500)
        said = self.reason and self.reason != f"not routed: {message}"[:200]
        route = f" (route: {self.reason})" if said else ""
        more = f" [{left_out} more like it since the last line]" if left_out else ""
        log.warning("%s %s -> %d: %s%s%s", method, path, self.status, message, route, more)


def error_message(body: bytes) -> str:
    """The message of an error body: `error` as text, OpenAI's `error.message`, else the
    body's start as text."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace") or "(no body)"
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    if isinstance(error, str):
        return error
    return body.decode("utf-8", "replace")
