"""The router's non-forwarding routes and error mapping, driven in-process (no lifespan,
so refresh is lazy, as on Lambda)."""

from __future__ import annotations

import httpx
import pytest

from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion
from mpfn.functions.router.asgi import RouterApp
from mpfn.store import LocalStore
from tests.router.conftest import error_text, make_pool, seed

DEAD = "http://127.0.0.1:9"  # discard port: nothing listens on loopback


@pytest.fixture
def seeded(store: LocalStore) -> LocalStore:
    seed(
        store,
        models=[
            demo_model_version(),
            demo_model_version(version="2"),
            ModelVersion(name="llm", version="1", format="gguf"),
        ],
        pools=[make_pool("p1", DEAD)],
    )
    return store


async def test_health_and_server_metadata(seeded: LocalStore, client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/live")).status_code == 200
    ready = await client.get("/v2/health/ready")
    assert ready.status_code == 200, ready.text
    meta = (await client.get("/v2")).json()
    assert meta["name"] == "mpfn-router" and "binary_tensor_data" in meta["extensions"]
    assert (await client.get("/v2/")).status_code == 200


async def test_model_metadata_from_registry(seeded: LocalStore, client: httpx.AsyncClient) -> None:
    meta = (await client.get("/v2/models/demo")).json()
    assert meta == {
        "name": "demo",
        "versions": ["1", "2"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
    }
    assert (await client.get("/v2/models/demo/versions/1")).json()["versions"] == ["1"]
    missing = await client.get("/v2/models/demo/versions/7")
    assert missing.status_code == 404 and "no version" in missing.json()["error"]
    unknown = await client.get("/v2/models/nope")
    assert unknown.status_code == 404 and "unknown model" in unknown.json()["error"]


async def test_model_ready(seeded: LocalStore, client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/models/demo/ready")).json() == {"name": "demo", "ready": True}
    assert (await client.get("/v2/models/demo/versions/2/ready")).status_code == 200
    assert (await client.get("/v2/models/nope/ready")).status_code == 404
    no_pool = await client.get("/v2/models/llm/ready")  # gguf: no openai pool registered
    assert no_pool.status_code == 503 and "error" in no_pool.json()


async def test_openai_model_list(store: LocalStore, client: httpx.AsyncClient) -> None:
    seed(
        store,
        models=[demo_model_version(), ModelVersion(name="llm", version="1", format="gguf")],
        pools=[make_pool("o", DEAD, adapter="openai", models=["chat-x"])],
    )
    listing = (await client.get("/v1/models")).json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["chat-x", "llm"]
    assert (await client.get("/v1/models/llm")).json()["id"] == "llm"
    assert (await client.get("/v1/models/demo")).status_code == 404


async def test_infer_errors_are_json(
    seeded: LocalStore, app: RouterApp, client: httpx.AsyncClient
) -> None:
    unknown = await client.post("/v2/models/nope/infer", content=b"{}")
    assert unknown.status_code == 404 and "unknown model" in unknown.json()["error"]
    bad_version = await client.post("/v2/models/demo/versions/9/infer", content=b"{}")
    assert bad_version.status_code == 404
    weird = await client.post("/v2/models/..%2F..%2Fetc/infer", content=b"{}")
    assert weird.status_code == 404 and "error" in weird.json()
    too_big = await client.post("/v2/models/demo/infer", content=b"x" * 5000)
    assert too_big.status_code == 413 and "limit" in too_big.json()["error"]

    async def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(5):
            yield b"x" * 1000

    streamed = await client.post("/v2/models/demo/infer", content=chunks())
    assert streamed.status_code == 413
    dead = await client.post("/v2/models/demo/infer", content=b"{}")
    assert dead.status_code == 503 and "no healthy backend" in dead.json()["error"]
    assert dead.json()["error"].startswith("no healthy backend: p1:")
    no_pool = await client.post("/v1/chat/completions", json={"model": "llm", "messages": []})
    assert no_pool.status_code == 503
    bad_body = await client.post("/v1/embeddings", content=b"not json")
    assert bad_body.status_code == 400 and "JSON" in error_text(bad_body)
    openai_unknown = await client.post("/v1/completions", json={"model": "gpt-x", "prompt": "a"})
    assert openai_unknown.status_code == 404
    # Requests for known models count as demand even when no backend answered;
    # unknown names never count.
    assert {m for (m, _minute) in app.runtime.usage.counts()} == {"demo", "llm"}


async def test_unexposed_and_unknown_routes(seeded: LocalStore, client: httpx.AsyncClient) -> None:
    for method, path in [
        ("POST", "/v2/repository/models/demo/load"),
        ("POST", "/v2/repository/index"),
        ("GET", "/nowhere"),
    ]:
        r = await client.request(method, path)
        assert r.status_code == 404, path
        assert "error" in r.json()
    wrong_method = await client.get("/v1/chat/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


async def test_openapi_documents_forwarding_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v2/health/ready",
    ):
        assert path in paths
    assert not any(p.startswith("/v2/repository") for p in paths)


async def test_registry_unavailable_before_first_load(tmp_path) -> None:
    from mpfn.functions.router.asgi import create_app

    from .conftest import settings

    root = tmp_path / "gone"
    store = LocalStore(root)
    root.rmdir()
    router = create_app(store, settings=settings())
    transport = httpx.ASGITransport(app=router)
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
        r = await c.post("/v2/models/demo/infer", content=b"{}")
        assert r.status_code == 503 and "registry unavailable" in r.json()["error"]
        assert (await c.get("/v2/health/ready")).status_code == 503
    await router.runtime.stop()
