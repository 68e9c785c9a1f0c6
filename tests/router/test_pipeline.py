"""The request pipeline: every route under a root path, in both ASGI path conventions, with
API keys off and on; and a Lambda cold start answers every GET route as a warm instance.

A router behind a proxy or gateway stage that strips a prefix runs with `root_path`; ASGI
servers differ on whether `scope["path"]` then carries the prefix (uvicorn does) or not.
Either way each route must be served, and guarded, exactly as without a prefix.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from mpfn.auth import issue_key
from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion
from mpfn.functions.router.asgi import create_app
from mpfn.functions.router.lambda_handler import make_handler
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.router.backend import Backend, serve
from tests.router.conftest import make_pool, seed, settings

ROOT = "/api"
INFER = b'{"inputs":[{"name":"x","shape":[1,16],"datatype":"FP32","data":[0]}]}'
CHAT = b'{"model":"llm","messages":[{"role":"user","content":"hi"}]}'
EMBED = b'{"model":"llm","input":"hi"}'

# (method, path, body, needs a key when keys are on)
ROUTES: list[tuple[str, str, bytes | None, bool]] = [
    ("GET", "/v2/health/live", None, False),
    ("GET", "/v2/health/ready", None, False),
    ("GET", "/v2", None, False),
    ("GET", "/openapi.json", None, False),
    ("GET", "/docs", None, False),
    ("GET", "/redoc", None, False),
    ("GET", "/metrics", None, False),
    ("GET", "/v2/models/demo", None, True),
    ("GET", "/v2/models/demo/versions/1", None, True),
    ("GET", "/v2/models/demo/ready", None, True),
    ("GET", "/v2/models/demo/versions/1/ready", None, True),
    ("GET", "/v2/models/demo/config", None, True),
    ("GET", "/v2/models/demo/versions/1/config", None, True),
    ("GET", "/v2/models/stats", None, True),
    ("GET", "/v2/models/demo/stats", None, True),
    ("GET", "/v2/models/demo/versions/1/stats", None, True),
    ("GET", "/v1/models", None, True),
    ("GET", "/v1/models/llm", None, True),
    ("POST", "/v2/models/demo/infer", INFER, True),
    ("POST", "/v2/models/demo/versions/1/infer", INFER, True),
    ("POST", "/v1/chat/completions", CHAT, True),
    ("POST", "/v1/embeddings", EMBED, True),
]
GET_ROUTES = [path for method, path, _, _ in ROUTES if method == "GET"]


def seed_registry(store: LocalStore, backend_url: str) -> str:
    """Demo model on an ORT pool, `llm` on an OpenAI pool, one key; returns the key."""
    seed(
        store,
        models=[demo_model_version(), ModelVersion(name="llm", version="1", format="gguf")],
        pools=[make_pool("pa", backend_url), make_pool("chat", backend_url, adapter="openai")],
    )
    plaintext, doc = issue_key("everything")
    Documents(store).upsert(doc.key, doc)
    return plaintext


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with serve(Backend("a")) as b:
        b.release_stream.set()  # stream the whole answer at once
        yield b


@pytest.mark.parametrize("auth", ["none", "keys"])
@pytest.mark.parametrize("convention", ["path carries root_path", "path without root_path"])
async def test_every_route_under_a_root_path(
    store: LocalStore, backend: Backend, auth: str, convention: str
) -> None:
    key = seed_registry(store, backend.url)
    app = create_app(store, settings=settings(auth=auth))
    prefix = ROOT if convention == "path carries root_path" else ""
    transport = httpx.ASGITransport(app=app, root_path=ROOT)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            for method, path, body, guarded in ROUTES:
                url = prefix + path
                bare = await client.request(method, url, content=body)
                if auth == "keys" and guarded:
                    assert bare.status_code == 401, (url, bare.text)
                    assert "error" in bare.json()
                else:
                    assert bare.status_code == 200, (url, bare.text)
                keyed = await client.request(
                    method, url, content=body, headers={"Authorization": f"Bearer {key}"}
                )
                assert keyed.status_code == 200, (url, keyed.text)
                if path.endswith("/infer"):
                    assert keyed.headers["x-mpfn-pool"] == "pa"
                    assert backend.seen[-1]["path"] == path  # the prefix never reaches a pool
    finally:
        await app.runtime.stop()


async def test_wrong_method_on_a_forwarding_route_is_405_under_a_root_path(
    store: LocalStore, backend: Backend
) -> None:
    seed_registry(store, backend.url)
    app = create_app(store, settings=settings())
    transport = httpx.ASGITransport(app=app, root_path=ROOT)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            r = await client.get(ROOT + "/v2/models/demo/infer")
            assert r.status_code == 405 and r.headers["allow"] == "POST"
            assert "error" in r.json()
    finally:
        await app.runtime.stop()


def get_event(path: str) -> dict[str, Any]:
    """A Lambda Function URL (payload v2) GET event."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "abc123.lambda-url.us-east-1.on.aws", "x-forwarded-proto": "https"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "test",
            },
            "requestId": "c0ffee",
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": 1709622540000,
        },
        "isBase64Encoded": False,
    }


@pytest.fixture
def lambda_store(store: LocalStore) -> Iterator[LocalStore]:
    seed_registry(store, "http://127.0.0.1:9")  # GET routes never call a pool
    yield store


@pytest.mark.parametrize("path", GET_ROUTES)
def test_lambda_cold_start_answers_every_get_route_like_a_warm_instance(
    lambda_store: LocalStore, path: str
) -> None:
    lambda_settings = settings(refresh_ttl_s=3600.0)
    warm = make_handler(create_app(lambda_store, settings=lambda_settings))
    assert warm(get_event("/v2/health/live"), None)["statusCode"] == 200  # now warm
    warm_answer = warm(get_event(path), None)
    cold = make_handler(create_app(lambda_store, settings=lambda_settings))
    cold_answer = cold(get_event(path), None)  # the first event of a new instance
    assert cold_answer["statusCode"] == warm_answer["statusCode"] == 200, cold_answer
    if path in ("/docs", "/redoc"):  # HTML pages
        assert cold_answer["body"] == warm_answer["body"]
    elif path != "/metrics":  # counters differ between instances; the rest is the snapshot's
        assert json.loads(cold_answer["body"]) == json.loads(warm_answer["body"])
