"""The router's usage records the pool that answered and the tokens of OpenAI answers:
an in-process router in front of real loopback backends (an OpenAI-shaped one, buffered
and streaming, and a v2 one), then the documents its flush wrote."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from aiohttp import web
from starlette.types import Message

from mpfn.demo import demo_model_version
from mpfn.functions.router.asgi import RouterApp, create_app
from mpfn.functions.router.usage import TokenTap
from mpfn.store import LocalStore
from mpfn.usage import MinuteUsage, PoolUsage, latest_usage, read_usage
from tests.router.backend import Backend
from tests.router.conftest import make_pool, seed, settings

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


async def chat(request: web.Request) -> web.StreamResponse:
    """Chat completions: buffered with `usage`, or a stream whose last chunk carries it,
    written in two pieces that split the `usage` object."""
    body = await request.json()
    if not body.get("stream"):
        answer = {  # usage first: the quoted key in the text after it must not count
            "object": "chat.completion",
            "usage": USAGE,
            "choices": [{"message": {"content": 'say "prompt_tokens": 999'}}],
        }
        if "gzip" in request.headers.get("accept-encoding", ""):
            return web.Response(
                body=gzip.compress(json.dumps(answer).encode()),
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        return web.json_response(answer)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for n in range(3):
        delta = {"choices": [{"delta": {"content": f"w{n}"}}], "usage": None}
        await resp.write(b"data: " + json.dumps(delta).encode() + b"\n\n")
    last = {"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 3}}
    data = b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n"
    cut = data.index(b"completion_tok")
    await resp.write(data[:cut])
    await resp.write(data[cut:])
    await resp.write_eof()
    return resp


async def embeddings(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response(
        {"data": [{"embedding": [0.1, 0.2]}], "usage": {"prompt_tokens": 4, "total_tokens": 4}}
    )


@asynccontextmanager
async def openai_backend() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def usage_of(store: LocalStore, model: str) -> MinuteUsage:
    """The model's counts summed over the documents that count."""
    count = 0
    pools: dict[str, PoolUsage] = {}
    for key in latest_usage(store.list(f"usage/{model}/")):
        blob = store.get(key)
        assert blob is not None
        doc = read_usage(key, blob.body)
        count += doc.count
        for pool, u in doc.pools.items():
            old = pools.get(pool, PoolUsage())
            pools[pool] = PoolUsage(
                old.requests + u.requests,
                old.prompt_tokens + u.prompt_tokens,
                old.completion_tokens + u.completion_tokens,
            )
    return MinuteUsage(count, pools)


@asynccontextmanager
async def routed(store: LocalStore) -> AsyncIterator[tuple[RouterApp, httpx.AsyncClient]]:
    app = create_app(store, settings=settings())
    try:
        transport = httpx.ASGITransport(app=app)
        plain = {"accept-encoding": "identity"}  # httpx asks for gzip by default
        async with httpx.AsyncClient(
            transport=transport, base_url="http://router", headers=plain
        ) as c:
            yield app, c
    finally:
        await app.runtime.stop()


async def test_openai_answers_record_pool_and_tokens(store: LocalStore) -> None:
    async with openai_backend() as url:
        seed(store, pools=[make_pool("llm", url, adapter="openai", models=["chatty"])])
        async with routed(store) as (app, client):
            ask = {"model": "chatty", "messages": [{"role": "user", "content": "hi"}]}
            r = await client.post("/v1/chat/completions", json=ask)
            assert r.status_code == 200 and r.headers["x-mpfn-pool"] == "llm"
            assert r.json()["usage"] == USAGE  # relayed unchanged
            streamed = {**ask, "stream": True, "stream_options": {"include_usage": True}}
            async with client.stream("POST", "/v1/chat/completions", json=streamed) as s:
                assert s.status_code == 200
                assert b"[DONE]" in b"".join([c async for c in s.aiter_raw()])
            r = await client.post("/v1/embeddings", json={"model": "chatty", "input": "x"})
            assert r.status_code == 200
            # a compressed answer is counted for its pool, without tokens
            r = await client.post(
                "/v1/chat/completions", json=ask, headers={"accept-encoding": "gzip"}
            )
            assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
            await app.runtime.flush_usage()
    got = usage_of(store, "chatty")
    assert got.count == 4
    assert dict(got.pools) == {"llm": PoolUsage(4, 11 + 20 + 4, 7 + 3)}


async def test_v2_answers_record_the_pool_that_answered(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    a, b = backends
    a.status = 503  # fails over to b
    pools = [make_pool("a", a.url, cost=0.1), make_pool("b", b.url, cost=0.2)]
    seed(store, models=[demo_model_version()], pools=pools)
    async with routed(store) as (app, client):
        for _ in range(3):
            r = await client.post("/v2/models/demo/infer", content=b"{}")
            assert r.status_code == 200 and r.headers["x-mpfn-pool"] == "b"
        r = await client.post("/v2/models/nope/infer", content=b"{}")
        assert r.status_code == 404
        await app.runtime.flush_usage()
    assert usage_of(store, "demo") == MinuteUsage(3, {"b": PoolUsage(3)})
    assert store.list("usage/nope/") == []


async def test_refused_requests_are_counted_without_a_pool(store: LocalStore) -> None:
    seed(store, pools=[make_pool("dead", "http://127.0.0.1:9", adapter="openai", models=["m"])])
    async with routed(store) as (app, client):
        r = await client.post("/v1/embeddings", json={"model": "m", "input": "x"})
        assert r.status_code == 503 and r.headers["x-mpfn-pool"] == "none"
        await app.runtime.flush_usage()
    assert usage_of(store, "m") == MinuteUsage(1, {})


async def test_token_tap_reads_usage_split_across_body_messages() -> None:
    sent: list[Message] = []

    async def downstream(message: Message) -> None:
        sent.append(message)

    tap = TokenTap(downstream)
    body = b'data: {"usage": {"prompt_tokens": 1234, "completion_tokens": 56}}\n\n'
    start = {"type": "http.response.start", "status": 200, "headers": []}
    await tap.send(start)
    for i in range(0, len(body), 3):  # three bytes at a time
        await tap.send({"type": "http.response.body", "body": body[i : i + 3], "more_body": True})
    await tap.send({"type": "http.response.body", "body": b""})
    assert (tap.prompt_tokens, tap.completion_tokens) == (1234, 56)
    assert b"".join(m.get("body", b"") for m in sent[1:]) == body  # relayed unchanged
    error = TokenTap(downstream)
    await error.send({**start, "status": 400})
    await error.send({"type": "http.response.body", "body": body})
    assert (error.prompt_tokens, error.completion_tokens) == (0, 0)
