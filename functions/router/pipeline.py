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
unexpected failure before an answer started becomes a 502 JSON error.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mpfn.functions.router.errors import RouteError, error_body, send_error, send_json
from mpfn.functions.router.hotpath import ForwardingRoutes, match_route
from mpfn.functions.router.runtime import RouterRuntime

log = logging.getLogger("mpfn.router")

API_KEY_STATE = "api_key"  # `request.state.api_key`: the verified key (None: keys off)


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)  # lifespan
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._serve(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            if not started:
                await send_error(send, 502, f"router error: {type(exc).__name__}")

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
            await send_json(send, exc.status, error_body(exc.message), exc.headers)
            return
        if match_route("POST", path) is not None:  # a forwarding route, another method
            message = f"method {scope['method']} not allowed on {path}; use POST"
            await send_json(send, 405, error_body(message), [(b"allow", b"POST")])
            return
        scope.setdefault("state", {})[API_KEY_STATE] = key
        await self.api(scope, receive, send)

    async def maintain(self) -> int:
        """Refresh when due and flush usage now; for hosts that ping between requests.

        Returns the number of usage documents written.
        """
        await self.runtime.tick()
        return await self.runtime.flush()
