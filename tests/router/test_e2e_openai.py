"""End to end, OpenAI side: the openai SDK through a real router process to llama.cpp's
OpenAI-compatible server (SmolLM2 GGUF), plus streaming pass-through proven chunk by chunk."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.router.backend import Backend, event_data, serve
from tests.router.conftest import error_text, make_pool
from tests.servers.llama_cpp import MODEL, start_llama
from tests.servers.mpfn_procs import start_router
from tests.servers.process import Proc

LIMIT = 200_000


@dataclass
class Stack:
    store: LocalStore
    router: Proc
    llama: Proc


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("openai")
    store = LocalStore(root / "state")
    try:
        llama = start_llama(root / "logs")
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    router: Proc | None = None
    try:
        docs = Documents(store)
        docs.upsert("pools/llm.json", make_pool("llm", llama.url, adapter="openai", models=[MODEL]))
        docs.upsert(
            "pools/gone.json",
            make_pool("gone", "http://127.0.0.1:9", adapter="openai", models=["ghost-llm"]),
        )
        router = start_router(store, root / "logs", env={"MPFN_ROUTER_MAX_BODY_BYTES": str(LIMIT)})
        yield Stack(store, router, llama)
    finally:
        if router is not None:
            router.stop()
        llama.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{stack.router.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_models_chat_and_embeddings(client: openai.OpenAI) -> None:
    assert sorted(m.id for m in client.models.list()) == ["ghost-llm", MODEL]
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8
    )
    assert chat.choices[0].message.content
    completion = client.completions.create(model=MODEL, prompt="One, two,", max_tokens=4)
    assert completion.choices[0].text
    emb = client.embeddings.create(model=MODEL, input="hello", encoding_format="float")
    assert emb.data and emb.data[0].embedding


def test_streaming_chat_arrives_as_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=12,
        stream=True,
    )
    deltas = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len(deltas) > 3 and "".join(deltas).strip()


def test_openai_errors_are_json(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "x"}]
        )
    assert "unknown model" in error_text(unknown.value.response)
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model"
    with pytest.raises(openai.APIStatusError) as too_big:
        client.completions.create(model=MODEL, prompt="a" * (LIMIT + 1), max_tokens=1)
    assert too_big.value.status_code == 413 and "limit" in error_text(too_big.value.response)
    with pytest.raises(openai.APIStatusError) as no_backend:
        client.embeddings.create(model="ghost-llm", input="x")
    assert no_backend.value.status_code == 503
    assert no_backend.value.type == "server_error"
    assert "no healthy backend" in error_text(no_backend.value.response)


async def test_stream_is_relayed_before_the_backend_finishes(stack: Stack) -> None:
    """The backend holds its second event until the client has read the first one
    through the router; a buffering router would never deliver the first."""
    async with serve(Backend("sse")) as backend:
        Documents(stack.store).upsert(
            "pools/sse.json", make_pool("sse", backend.url, adapter="openai", models=["sse-model"])
        )
        async with httpx.AsyncClient(base_url=stack.router.url, timeout=20) as client:
            # Wait for the router's background refresh to pick up the new pool.
            while (await client.get("/v1/models/sse-model")).status_code != 200:
                await asyncio.sleep(0.05)
            request = {"model": "sse-model", "messages": [], "stream": True}
            async with client.stream("POST", "/v1/chat/completions", json=request) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                assert r.headers["x-mpfn-pool"] == "sse"
                events: list[object] = []
                async for chunk in r.aiter_raw():
                    events.extend(event_data(chunk))
                    if events == [{"n": 1}]:
                        backend.release_stream.set()
                assert events == [{"n": 1}, {"n": 2}]
