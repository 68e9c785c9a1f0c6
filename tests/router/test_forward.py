"""Forwarding through the router to real loopback backends: bytes, headers, failover."""

from __future__ import annotations

import json

import httpx

from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion
from mpfn.functions.router.asgi import RouterApp
from mpfn.store import LocalStore
from tests.router.backend import Backend
from tests.router.conftest import make_pool, seed


async def test_raw_bytes_and_headers_pass_through(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, _ = backends
    seed(store, models=[demo_model_version()], pools=[make_pool("pa", a.url)])
    header = (
        b'{"inputs":[{"name":"x","shape":[1,16],"datatype":"FP32",'
        b'"parameters":{"binary_data_size":64}}]}'
    )
    body = header + bytes(range(64))
    r = await client.post(
        "/v2/models/demo/infer",
        content=body,
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Authorization": "Bearer secret",
            "Cookie": "c=1",
        },
    )
    assert r.status_code == 200, r.text
    assert r.content == body
    assert r.headers["x-mpfn-pool"] == "pa"
    assert r.headers["inference-header-content-length"] == str(len(header))
    assert r.headers["x-mpfn-inflight"] == "1"
    assert r.headers["content-type"] == "application/octet-stream"
    sent = a.seen[-1]
    assert sent["body"] == body and sent["path"] == "/v2/models/demo/infer"
    headers = {k.lower() for k in sent["headers"]}
    assert "content-type" not in headers  # none sent, none invented
    assert "authorization" not in headers and "cookie" not in headers
    assert "inference-header-content-length" in headers


async def test_versioned_path_and_query_not_forwarded(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, _ = backends
    seed(store, models=[demo_model_version()], pools=[make_pool("pa", a.url)])
    r = await client.post("/v2/models/demo/versions/1/infer?x=../../y", content=b"{}")
    assert r.status_code == 200
    assert a.seen[-1]["path"] == "/v2/models/demo/versions/1/infer"


async def test_equal_pools_share_the_traffic(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    seed(
        store, models=[demo_model_version()], pools=[make_pool("pa", a.url), make_pool("pb", b.url)]
    )
    answered = [
        (await client.post("/v2/models/demo/infer", content=b"{}")).headers["x-mpfn-pool"]
        for _ in range(40)
    ]
    # A pool that never answered may still have to load the model: it is tried at a low
    # rate until it answers once; from then on two equally fast pools share the traffic.
    assert set(answered) == {"pa", "pb"}
    assert min(answered[-20:].count("pa"), answered[-20:].count("pb")) >= 5, answered


async def test_backend_4xx_relayed_unchanged_and_503_fails_over(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    seed(
        store, models=[demo_model_version()], pools=[make_pool("pa", a.url), make_pool("pb", b.url)]
    )
    a.status = 400
    b.status = 400
    r = await client.post("/v2/models/demo/infer", content=b"{}")
    assert r.status_code == 400 and r.json()["error"].endswith("says no")
    a.status = 503
    b.status = 200
    for _ in range(4):
        ok = await client.post("/v2/models/demo/infer", content=b"{}")
        assert ok.status_code == 200 and ok.headers["x-mpfn-pool"] == "pb"
    b.status = 503
    down = await client.post("/v2/models/demo/infer", content=b"{}")
    assert down.status_code == 503
    assert "pa: HTTP 503" in down.json()["error"] and "pb: HTTP 503" in down.json()["error"]


async def test_connection_refused_fails_over(
    store: LocalStore, app: RouterApp, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, _ = backends
    seed(
        store,
        models=[demo_model_version()],
        pools=[make_pool("dead", "http://127.0.0.1:9"), make_pool("pa", a.url)],
    )
    reasons = []
    for _ in range(4):
        r = await client.post("/v2/models/demo/infer", content=b"{}")
        assert r.status_code == 200 and r.headers["x-mpfn-pool"] == "pa"
        reasons.append(r.headers["x-mpfn-route-reason"])
    assert any("; attempt 2 after dead (dead: " in reason for reason in reasons)
    dead = app.runtime.routing.feedback.stats["dead"]
    assert dead.errors >= 1 and dead.last_error


async def test_redirects_are_never_followed(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, _ = backends
    a.status = 307
    seed(store, models=[demo_model_version()], pools=[make_pool("pa", a.url)])
    r = await client.post("/v2/models/demo/infer", content=b"{}")
    assert r.status_code == 307 and r.headers["location"] == "http://127.0.0.1:9/elsewhere"
    assert len(a.seen) == 1


async def test_openai_routes_go_to_openai_pools(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    seed(
        store,
        models=[ModelVersion(name="llm", version="1", format="gguf")],
        pools=[make_pool("ort", a.url), make_pool("llm-pool", b.url, adapter="openai")],
    )
    r = await client.post("/v1/embeddings", json={"model": "llm", "input": "hi"})
    assert r.status_code == 200 and r.headers["x-mpfn-pool"] == "llm-pool"
    assert b.seen[-1]["path"] == "/v1/embeddings" and not a.seen


async def test_openai_requests_name_the_model_as_its_server_knows_it(
    store: LocalStore, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    _, b = backends
    labels = {"served_model": "smollm2"}
    seed(
        store,
        models=[ModelVersion(name="chat", version="1", format="openai", labels=labels)],
        pools=[make_pool("llm-pool", b.url, adapter="openai")],
    )
    r = await client.post("/v1/embeddings", json={"model": "chat", "input": "hi"})
    assert r.status_code == 200
    assert json.loads(b.seen[-1]["body"]) == {"model": "smollm2", "input": "hi"}
