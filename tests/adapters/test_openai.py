"""`openai` adapter against llama.cpp's real OpenAI-compatible server (SmolLM2 GGUF):
chat, completions, embeddings, streaming, the v2 -> completions mapping, credentials and
the route allow-list. Greedy decoding (temperature 0, fixed seed) makes outputs repeatable."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from aiohttp import web
from pydantic import HttpUrl

from mpfn.adapters.base import AdapterConfig, AdapterError
from mpfn.adapters.openai import OpenAIAdapter
from mpfn.documents import Pool
from mpfn.protocol import InferInput, InferRequest, RequestedOutput
from tests.adapters.contract import text_request
from tests.adapters.servers_openai import DETERMINISTIC, MODEL, LlamaServer, llm_model

CHAT = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Name one colour."}],
    **DETERMINISTIC,
}


@pytest.fixture
async def adapter(llama_server: LlamaServer) -> AsyncIterator[OpenAIAdapter]:
    async with httpx.AsyncClient(timeout=120) as client:
        yield OpenAIAdapter(llama_server.config(), client=client)


def sse_events(raw: bytes) -> list[str]:
    return [
        line.removeprefix("data:").strip()
        for line in raw.decode().splitlines()
        if line.startswith("data:")
    ]


async def test_chat_is_repeatable_at_temperature_zero(adapter: OpenAIAdapter) -> None:
    first = await adapter.openai("/v1/chat/completions", CHAT)
    second = await adapter.openai("/v1/chat/completions", CHAT)
    content = first["choices"][0]["message"]["content"]
    assert content and content == second["choices"][0]["message"]["content"]
    stats = await adapter.stats()
    assert stats.latency_ms[MODEL] > 0 and stats.requests == 2 and stats.errors == 0


async def test_stream_yields_sse_that_matches_the_plain_answer(adapter: OpenAIAdapter) -> None:
    plain = await adapter.openai("/v1/chat/completions", CHAT)
    chunks = [chunk async for chunk in adapter.openai_stream("/v1/chat/completions", CHAT)]
    events = sse_events(b"".join(chunks))
    assert events[-1] == "[DONE]"
    deltas = [json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]]
    assert "".join(deltas) == plain["choices"][0]["message"]["content"]
    assert (await adapter.stats()).extra["ttft_ms"][MODEL] > 0


async def test_completion_stream_and_embeddings(adapter: OpenAIAdapter) -> None:
    body = {"model": MODEL, "prompt": "One, two,", **DETERMINISTIC}
    raw = b"".join([c async for c in adapter.openai_stream("/v1/completions", body)])
    text = "".join(json.loads(e)["choices"][0]["text"] for e in sse_events(raw)[:-1])
    assert text == (await adapter.openai("/v1/completions", body))["choices"][0]["text"]
    embedded = await adapter.openai("/v1/embeddings", {"model": MODEL, "input": "hello"})
    vector = np.asarray(embedded["data"][0]["embedding"], dtype=np.float64)  # may be per token
    assert vector.size > 0 and np.all(np.isfinite(vector))


async def test_v2_text_input_maps_to_one_completion_per_element(adapter: OpenAIAdapter) -> None:
    prompts = ["The sky is", "Water is"]
    array = np.array([[p.encode()] for p in prompts], dtype=object)  # shape [2, 1]
    request = InferRequest(
        inputs=[InferInput("text", "BYTES", array.shape, array)],
        parameters={**DETERMINISTIC, "binary_data_output": True},
    )
    response = await adapter.infer(llm_model(), request)
    assert response.outputs["text"].shape == (2, 1)
    assert response.datatypes == {"text": "BYTES"}
    for prompt, out in zip(prompts, response.outputs["text"].ravel(), strict=True):
        direct = await adapter.openai(
            "/v1/completions", {"model": MODEL, "prompt": prompt, **DETERMINISTIC}
        )
        assert out.decode() == direct["choices"][0]["text"]


@pytest.mark.parametrize(
    "request_, needle",
    [
        (text_request("a", temperature=0, top_k=3), "unsupported parameter(s) top_k"),
        (text_request("a", stream=True), "cannot stream"),
        (
            InferRequest(inputs=[InferInput("x", "FP32", (1,), np.zeros(1, np.float32))]),
            "one BYTES input named 'text'",
        ),
        (
            InferRequest(inputs=[InferInput("text", "FP32", (1,), np.zeros(1, np.float32))]),
            "must be BYTES",
        ),
        (
            InferRequest(
                inputs=text_request("a").inputs, outputs=[RequestedOutput("logits", False)]
            ),
            "one output, 'text'",
        ),
        (InferRequest(inputs=[*text_request("a").inputs, *text_request("b").inputs]), "got: text"),
    ],
)
async def test_unsupported_v2_shapes_are_400(
    adapter: OpenAIAdapter, request_: InferRequest, needle: str
) -> None:
    with pytest.raises(AdapterError) as caught:
        await adapter.infer(llm_model(), request_)
    assert caught.value.status == 400
    assert needle in caught.value.message
    assert (await adapter.stats()).requests == 0  # refused before reaching the server


@pytest.mark.parametrize("path", ["/extras/tokenize", "/v1/models", "/v1/../admin"])
async def test_only_inference_routes_are_forwarded(adapter: OpenAIAdapter, path: str) -> None:
    with pytest.raises(AdapterError) as caught:
        await adapter.openai(path, {"model": MODEL, "input": "x"})
    assert caught.value.status == 404
    assert (await adapter.stats()).requests == 0


async def test_wrong_or_missing_api_key_is_a_gateway_error(llama_server: LlamaServer) -> None:
    for api_key in ("wrong-key", None):
        async with httpx.AsyncClient(timeout=30) as client:
            adapter = OpenAIAdapter(llama_server.config(api_key=api_key), client=client)
            with pytest.raises(AdapterError) as caught:
                await adapter.openai("/v1/completions", {"model": MODEL, "prompt": "Hi"})
            assert caught.value.status == 502
            assert "rejected the pool's credentials (401)" in caught.value.message
            assert not await adapter.ready()


@pytest.mark.parametrize("warmup", ["completions", "chat", "embeddings"])
async def test_load_is_a_timed_warm_up_and_unload_forgets_it(
    llama_server: LlamaServer, warmup: str
) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        adapter = OpenAIAdapter(llama_server.config(warmup=warmup), client=client)
        model = llm_model()
        assert not await adapter.ready(model)
        result = await adapter.load(model)
        assert result.load_ms > 0 and await adapter.loaded() == [MODEL]
        assert (await adapter.stats()).load_ms == {MODEL: result.load_ms}
        await adapter.unload(model)
        assert await adapter.loaded() == [] and await adapter.ready()


def test_unknown_warmup_is_rejected(llama_server: LlamaServer) -> None:
    with pytest.raises(ValueError, match="warmup"):
        OpenAIAdapter(llama_server.config(warmup="generate"))


async def test_servers_without_a_model_list_fall_back_to_health() -> None:
    """Some servers (older TGI) have `/health` but no `/v1/models`: a small real HTTP server
    with only those two routes stands for one."""
    seen: list[str] = []

    async def health(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({})

    async def completions(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"choices": [{"text": "!"}]})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/v1/completions", completions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    pool = Pool(
        id="tgi", cloud="local", adapter="openai", endpoint=HttpUrl(f"http://127.0.0.1:{port}")
    )
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            adapter = OpenAIAdapter(AdapterConfig(pool=pool), client=client)
            assert await adapter.ready()
            assert not await adapter.ready(llm_model())
            await adapter.load(llm_model())
            assert await adapter.ready(llm_model()) and await adapter.loaded() == [MODEL]
    finally:
        await runner.cleanup()
    assert seen.count("/v1/completions") == 1 and seen[0] == "/health"
