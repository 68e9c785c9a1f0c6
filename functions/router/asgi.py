"""`create_app`: the router's ASGI application, assembled from its parts.

Request flow: `RouterApp` (turns any unexpected failure into a 502 JSON error) ->
`ForwardingRoutes` (raw ASGI: infer and OpenAI POSTs) -> FastAPI (everything else).
"""

from __future__ import annotations

import logging

from starlette.types import Message, Receive, Scope, Send

from mpfn.functions.router.api import create_api
from mpfn.functions.router.errors import send_error
from mpfn.functions.router.forward import SessionFactory
from mpfn.functions.router.hotpath import ForwardingRoutes
from mpfn.functions.router.runtime import RouterRuntime
from mpfn.functions.router.settings import RouterSettings
from mpfn.store.base import Store
from mpfn.telemetry.tracing import configure_tracing
from mpfn.telemetry.tracing import tracer as tracer_for_router

log = logging.getLogger("mpfn.router")
ROUTER_SERVICE = "mpfn-router"


class RouterApp:
    """The outermost ASGI callable; `runtime` exposes the router's live state."""

    def __init__(self, runtime: RouterRuntime) -> None:
        self.runtime = runtime
        self.api = create_api(runtime, self._dispatch)
        self.routes = ForwardingRoutes(runtime, self.api)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.routes.dispatch(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.routes(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.routes(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            if not started:
                await send_error(send, 502, f"router error: {type(exc).__name__}")

    async def maintain(self) -> int:
        """Refresh when due and flush usage now; for hosts that ping between requests.

        Returns the number of usage documents written.
        """
        await self.runtime.tick()
        return await self.runtime.flush()


def create_app(
    store: Store | None = None,
    *,
    settings: RouterSettings | None = None,
    session_factory: SessionFactory | None = None,
) -> RouterApp:
    """Build a router over `store` (default: the configured state, e.g. `MPFN_STATE`).

    `settings` default to `RouterSettings.from_env()`; `session_factory` builds the
    aiohttp session used for every backend call (one per app, created on first use).
    Tracing is on when an OTLP endpoint is configured (`MPFN_OTLP_ENDPOINT` or
    `OTEL_EXPORTER_OTLP_ENDPOINT`); see `mpfn.telemetry.tracing`.
    """
    if store is None:
        from mpfn.config import load_config
        from mpfn.store import open_store

        config = load_config()
        store = open_store(config.state, config.options)
    tracer = tracer_for_router("mpfn.router") if configure_tracing(ROUTER_SERVICE) else None
    runtime = RouterRuntime(
        store,
        settings or RouterSettings.from_env(),
        session_factory=session_factory,
        tracer=tracer,
    )
    return RouterApp(runtime)
