"""Tracing through a real router process: a span per routed request (continuing the
caller's trace) with routing attributes, a child span per attempt, spans exported to a real
OTLP/HTTP receiver, and the backend receiving the attempt span's `traceparent`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from mpfn.demo import demo_model_version
from mpfn.functions.router.asgi import RouterApp
from mpfn.store import LocalStore
from tests.router.backend import Backend, serve
from tests.router.conftest import make_pool, seed
from tests.servers.mpfn_procs import start_router
from tests.servers.otlp import Receiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
INCOMING = f"00-{TRACE_ID}-{PARENT_ID}-01"
BODY = b'{"inputs":[{"name":"x","shape":[1,16],"datatype":"FP32","data":[0]}]}'


def attrs(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind) if kind else None
    return out


def traceparent_of(backend: Backend) -> str:
    headers = {k.lower(): v for k, v in backend.seen[-1]["headers"].items()}
    return headers["traceparent"]


async def test_routed_request_spans_and_propagation(
    tmp_path: Path, otlp_receiver: Receiver
) -> None:
    store = LocalStore(tmp_path / "state")
    async with serve(Backend("bad", status=500)) as bad, serve(Backend("good")) as good:
        seed(
            store,
            models=[demo_model_version()],
            pools=[make_pool("bad", bad.url), make_pool("good", good.url)],
        )
        env = {"MPFN_OTLP_ENDPOINT": otlp_receiver.url}
        router = await asyncio.to_thread(start_router, store, tmp_path / "logs", env=env)
        try:
            async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
                failed_over = None
                for _ in range(6):
                    r = await client.post(
                        "/v2/models/demo/infer", content=BODY, headers={"traceparent": INCOMING}
                    )
                    assert r.status_code == 200 and r.headers["x-mpfn-pool"] == "good"
                    if "after bad" in r.headers["x-mpfn-route-reason"]:
                        failed_over = r.headers["x-mpfn-route-reason"]
                        break
                assert failed_over is not None
                seen_bad, seen_good = traceparent_of(bad), traceparent_of(good)
                r = await client.post("/v2/models/demo/infer", content=BODY)  # no caller trace
                assert r.status_code == 200
                fresh = traceparent_of(good)
        finally:
            await asyncio.to_thread(router.stop)  # shutdown exports every finished span

    spans = otlp_receiver.spans()
    (server,) = [
        s for s in spans if s.kind == Span.SPAN_KIND_SERVER and s.trace_id.hex() == TRACE_ID
        and attrs(s)["mpfn.attempts"] == 2
    ]  # fmt: skip
    assert server.name == "POST /v2/models/{model}/infer"
    assert server.parent_span_id.hex() == PARENT_ID  # the caller's trace continues
    a = attrs(server)
    assert a["mpfn.model"] == "demo" and a["mpfn.model.version"] == "1"
    assert a["mpfn.pool"] == "good" and a["http.response.status_code"] == 200
    assert a["mpfn.route.reason"] and failed_over.startswith(a["mpfn.route.reason"])

    children = [s for s in spans if s.parent_span_id == server.span_id]
    assert [s.name for s in sorted(children, key=lambda s: s.start_time_unix_nano)] == [
        "POST bad",
        "POST good",
    ]
    by_name = {s.name: s for s in children}
    assert all(s.kind == Span.SPAN_KIND_CLIENT for s in children)
    assert attrs(by_name["POST bad"])["mpfn.error"].startswith("HTTP 500")
    assert by_name["POST bad"].status.code == by_name["POST bad"].status.STATUS_CODE_ERROR
    assert attrs(by_name["POST good"])["http.response.status_code"] == 200
    assert attrs(by_name["POST good"])["url.full"] == f"{good.url}/v2/models/demo/infer"
    # each backend got the traceparent of the attempt span that reached it
    assert seen_bad == f"00-{TRACE_ID}-{by_name['POST bad'].span_id.hex()}-01"
    assert seen_good == f"00-{TRACE_ID}-{by_name['POST good'].span_id.hex()}-01"

    # without a caller trace the router starts one and still propagates it
    _, fresh_trace, fresh_parent, _ = fresh.split("-")
    assert fresh_trace != TRACE_ID
    (root,) = [
        s for s in spans if s.kind == Span.SPAN_KIND_SERVER and s.trace_id.hex() == fresh_trace
    ]
    assert not root.parent_span_id
    (attempt,) = [s for s in spans if s.parent_span_id == root.span_id]
    assert attempt.span_id.hex() == fresh_parent


async def test_tracing_is_off_by_default_and_the_callers_traceparent_passes_through(
    store: LocalStore, app: RouterApp, client: httpx.AsyncClient
) -> None:
    assert app.runtime.tracer is None and app.runtime.forwarder.tracer is None
    async with serve(Backend("a")) as a:
        seed(store, models=[demo_model_version()], pools=[make_pool("pa", a.url)])
        r = await client.post(
            "/v2/models/demo/infer", content=BODY, headers={"traceparent": INCOMING}
        )
        assert r.status_code == 200
        assert traceparent_of(a) == INCOMING
