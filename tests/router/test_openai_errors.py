"""OpenAI-shaped errors on every OpenAI route, as the `openai` SDK reads them: the router
in-process behind the SDK's own HTTP client (an ASGI transport), real loopback backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import httpx2
import openai
import pytest

from mpfn.auth import issue_key
from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion
from mpfn.functions.router.asgi import create_app
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.router.backend import Backend, serve
from tests.router.conftest import make_pool, seed, settings

DEAD = "http://127.0.0.1:9"
CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def busy() -> AsyncIterator[Backend]:
    """A backend that answers every request 503 + Retry-After (its queue is full)."""
    async with serve(Backend("busy", status=503, error_headers={"Retry-After": "1"})) as b:
        yield b


def seed_openai(store: LocalStore, busy_url: str) -> None:
    seed(
        store,
        models=[demo_model_version(), ModelVersion(name="llm", version="1", format="gguf")],
        pools=[
            make_pool("dead", DEAD, adapter="openai", models=["llm"]),
            make_pool("full", busy_url, adapter="openai", models=["crowded"]),
        ],
    )


def sdk(app: object, api_key: str = "unused") -> openai.AsyncOpenAI:
    transport = httpx2.ASGITransport(app=app)  # type: ignore[arg-type]
    http = httpx2.AsyncClient(transport=transport, base_url="http://router")
    return openai.AsyncOpenAI(
        base_url="http://router/v1", api_key=api_key, max_retries=0, http_client=http
    )


async def test_sdk_sees_code_type_and_param(store: LocalStore, busy: Backend) -> None:
    seed_openai(store, busy.url)
    app = create_app(store, settings=settings(streaming=False))
    try:
        async with sdk(app) as client:
            with pytest.raises(openai.NotFoundError) as unknown:
                await client.chat.completions.create(model="gpt-nope", messages=CHAT)  # type: ignore[arg-type]
            e: openai.APIStatusError = unknown.value
            assert (e.status_code, e.type, e.code, e.param) == (
                404,
                "invalid_request_error",
                "model_not_found",
                "model",
            )
            assert "unknown model 'gpt-nope'" in e.message

            with pytest.raises(openai.NotFoundError) as not_openai:
                await client.models.retrieve("demo")  # a v2 model
            assert not_openai.value.code == "model_not_found"

            with pytest.raises(openai.BadRequestError) as stream:
                await client.chat.completions.create(model="llm", messages=CHAT, stream=True)  # type: ignore[arg-type]
            e = stream.value
            assert (e.status_code, e.type, e.param) == (400, "invalid_request_error", "stream")

            with pytest.raises(openai.InternalServerError) as down:
                await client.embeddings.create(model="llm", input="x")
            e = down.value
            assert (e.status_code, e.type, e.code) == (503, "server_error", "service_unavailable")
            assert "no healthy backend" in e.message

            with pytest.raises(openai.InternalServerError) as shed:
                await client.embeddings.create(model="crowded", input="x")
            e = shed.value
            assert (e.status_code, e.type, e.code) == (503, "server_error", "service_unavailable")
            assert e.response.headers["retry-after"] == "1"

            with pytest.raises(openai.NotFoundError) as responses:
                await client.responses.create(model="llm", input="hi")
            e = responses.value
            assert e.code == "unsupported_endpoint" and "/v1/chat/completions" in e.message
    finally:
        await app.runtime.stop()


async def test_keys_errors_in_openai_shape(store: LocalStore, busy: Backend) -> None:
    seed_openai(store, busy.url)
    docs = Documents(store)
    other, other_doc = issue_key("other-only", models=["other"])
    limited, limited_doc = issue_key("limited", rate_per_s=0.001, burst=1)
    for doc in (other_doc, limited_doc):
        docs.upsert(doc.key, doc)
    app = create_app(store, settings=settings(auth="keys"))
    try:
        async with sdk(app, api_key="mpfn_nope_wrong") as client:
            with pytest.raises(openai.AuthenticationError) as refused:
                await client.models.list()
            e: openai.APIStatusError = refused.value
            assert (e.status_code, e.type, e.code) == (
                401,
                "authentication_error",
                "invalid_api_key",
            )
            assert "wrong" not in e.message  # the presented key is never echoed
        async with sdk(app, api_key=other) as client:
            with pytest.raises(openai.PermissionDeniedError) as scoped:
                await client.embeddings.create(model="llm", input="x")
            e = scoped.value
            assert (e.status_code, e.type, e.param) == (403, "permission_error", "model")
        async with sdk(app, api_key=limited) as client:
            with pytest.raises(openai.InternalServerError):  # the one token: a dead pool
                await client.embeddings.create(model="llm", input="x")
            with pytest.raises(openai.RateLimitError) as limited_error:
                await client.embeddings.create(model="llm", input="x")
            e = limited_error.value
            assert e.status_code == 429 and e.code == "rate_limit_exceeded"
            assert int(e.response.headers["retry-after"]) >= 1
    finally:
        await app.runtime.stop()


async def test_other_openai_paths_and_v2_shapes(store: LocalStore, busy: Backend) -> None:
    seed_openai(store, busy.url)
    app = create_app(store, settings=settings())
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            for method, path, status in [
                ("POST", "/v1/audio/speech", 404),
                ("GET", "/v1/chat/completions", 405),
                ("POST", "/v1/models", 405),
                ("POST", "/v1/chat/completions", 400),  # no body
            ]:
                r = await client.request(method, path)
                assert r.status_code == status, (path, r.text)
                error = r.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}, path
                assert error["type"] == "invalid_request_error"
            # KServe v2 and v1 routes keep {"error": "..."}.
            for path in ("/v2/models/nope/infer", "/v1/models/nope:predict"):
                r = await client.post(path, content=b"{}")
                assert r.status_code == 404 and isinstance(r.json()["error"], str)
            assert isinstance((await client.get("/v2/models/nope")).json()["error"], str)
    finally:
        await app.runtime.stop()
