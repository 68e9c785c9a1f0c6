"""`create_app`: the router's ASGI application, assembled from its parts.

`RouterApp` (the request pipeline, `mpfn.functions.router.pipeline`) in front of the
forwarding routes and the FastAPI app (`mpfn.functions.router.api`), over one runtime.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mpfn.functions.router.api import create_api
from mpfn.functions.router.forward import ClientFactory
from mpfn.functions.router.pipeline import RouterApp
from mpfn.functions.router.runtime import RouterRuntime
from mpfn.functions.router.settings import RouterSettings
from mpfn.functions.router.siblings import Siblings
from mpfn.store.base import Store
from mpfn.telemetry.tracing import configure_tracing
from mpfn.telemetry.tracing import tracer as tracer_for_router

ROUTER_SERVICE = "mpfn-router"

__all__ = ["RouterApp", "create_app"]


def create_app(
    store: Store | None = None,
    *,
    settings: RouterSettings | None = None,
    client_factory: ClientFactory | None = None,
    clock: Callable[[], float] = time.monotonic,
    routing_clock: Callable[[], float] = time.time,
) -> RouterApp:
    """Build a router over `store` (default: the configured state, e.g. `MPFN_STATE`).

    `settings` default to `RouterSettings.from_env()`; `client_factory` builds the
    `PoolClient` used for every backend call (one per app, created on first use);
    `clock` paces refreshes and flushes, `routing_clock` breakers and latency ages.
    With `settings.grpc_port`, the v2 gRPC API is served beside it (started with the
    lifespan: `mpfn.functions.router.grpc_server`). Tracing is on when an OTLP endpoint
    is configured (`MPFN_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`); see
    `mpfn.telemetry.tracing`.
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
        client_factory=client_factory,
        clock=clock,
        routing_clock=routing_clock,
        tracer=tracer,
    )
    app = RouterApp(runtime, create_api(runtime))
    if runtime.settings.grpc_port:
        from mpfn.functions.router.grpc_server import RouterGrpc

        runtime.services.append(RouterGrpc(app))
    if runtime.settings.metrics_dir:
        runtime.siblings = Siblings(runtime.settings.metrics_dir, runtime.metrics.render)
        runtime.services.append(runtime.siblings)
    return app
