"""The adapter contract, run against every built-in adapter with a real backend server.

Backends: mpfn's ONNX Runtime worker, llama.cpp's OpenAI-compatible server, and for TF
Serving a stand-in server (`tests.servers.tfserving_standin`, not TensorFlow Serving) that
follows TF Serving's documented REST API and gRPC reload call. Adding a backend: a
`<kind>_case` fixture (see contract.py) and one entry in BACKENDS.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from pydantic import HttpUrl

from mpfn.adapters import registry
from mpfn.adapters.base import Adapter, AdapterError, AdapterStats, LoadResult
from tests.adapters.contract import ContractCase

BACKENDS = ["ort", "tfserving", "openai", "triton", "torchserve"]


@pytest.fixture(params=BACKENDS)
def case(request: pytest.FixtureRequest) -> ContractCase:
    found: ContractCase = request.getfixturevalue(f"{request.param}_case")
    return found


@pytest.fixture
async def adapter(case: ContractCase) -> AsyncIterator[Adapter]:
    """The adapter the pool's `adapter` field names, found through entry points."""
    async with httpx.AsyncClient(timeout=120) as client:
        made = registry.create(case.config, client=client)
        try:
            yield made
        finally:
            await made.aclose()


def assert_client_safe(error: AdapterError) -> None:
    """The message can be sent as mpfn's JSON error body as it is: one non-empty line."""
    assert error.message and "\n" not in error.message
    assert json.loads(json.dumps({"error": error.message}))["error"] == error.message


async def test_adapter_is_the_kind_the_pool_names(case: ContractCase, adapter: Adapter) -> None:
    assert isinstance(adapter, Adapter)
    assert type(adapter).kind == case.kind == case.config.pool.adapter


async def test_infer_matches_the_engine_run_directly(case: ContractCase, adapter: Adapter) -> None:
    await adapter.load(case.model)
    response = await adapter.infer(case.model, case.request)
    assert response.model_name == case.model.name
    if case.reference is None:  # an LLM at temperature 0 with a fixed seed
        again = await adapter.infer(case.model, case.request)
        text = response.outputs["text"]
        assert text.shape == case.request.inputs[0].shape
        assert text[0] and isinstance(text[0], bytes)
        assert list(again.outputs["text"]) == list(text)
        return
    expected = case.reference(case.request)
    assert set(response.outputs) == set(expected)
    for name, array in expected.items():
        assert response.outputs[name].dtype == array.dtype
        np.testing.assert_array_equal(response.outputs[name], array)


async def test_load_ready_infer_unload_not_ready(case: ContractCase, adapter: Adapter) -> None:
    assert await adapter.ready()
    result = await adapter.load(case.model)
    assert isinstance(result, LoadResult)
    assert (result.model, result.version) == (case.model.name, case.model.version)
    assert result.load_ms > 0
    assert await adapter.ready(case.model)
    assert case.key in await adapter.loaded()
    await adapter.infer(case.model, case.request)
    await adapter.unload(case.model)
    assert not await adapter.ready(case.model)
    assert case.key not in await adapter.loaded()
    with pytest.raises(AdapterError) as missing:
        await adapter.load(case.missing)
    assert missing.value.status == 404
    assert_client_safe(missing.value)


async def test_backend_4xx_is_a_client_error(case: ContractCase, adapter: Adapter) -> None:
    with pytest.raises(AdapterError) as caught:
        await case.bad_request(adapter)
    assert 400 <= caught.value.status < 500
    assert caught.value.message.startswith(f"{case.kind} backend: ")
    assert_client_safe(caught.value)


async def test_backend_5xx_is_a_server_error(case: ContractCase, adapter: Adapter) -> None:
    with pytest.raises(AdapterError) as caught:
        await case.backend_failure(adapter)
    assert 500 <= caught.value.status < 600
    assert_client_safe(caught.value)


async def test_unreachable_backend_is_503(case: ContractCase) -> None:
    pool = case.config.pool.model_copy(update={"endpoint": HttpUrl("http://127.0.0.1:9")})
    config = type(case.config)(pool=pool, credentials=case.config.credentials, timeout_s=5)
    async with httpx.AsyncClient(timeout=5) as client:
        adapter = registry.create(config, client=client)
        try:
            assert not await adapter.ready()
            assert not await adapter.ready(case.model)
            with pytest.raises(AdapterError) as caught:
                await adapter.infer(case.model, case.request)
            assert caught.value.status == 503
            assert_client_safe(caught.value)
        finally:
            await adapter.aclose()


async def test_stats_report_loads_requests_and_latency(
    case: ContractCase, adapter: Adapter
) -> None:
    await adapter.unload(case.model)
    await adapter.load(case.model)
    await adapter.infer(case.model, case.request)
    # Servers such as Triton record a request's statistics just after answering it.
    stats = await adapter.stats()
    for _ in range(50):
        if stats.requests >= 1 and stats.latency_ms.get(case.key, 0) > 0:
            break
        await asyncio.sleep(0.1)
        stats = await adapter.stats()
    assert isinstance(stats, AdapterStats)
    assert case.key in stats.loaded
    assert stats.requests >= 1
    assert stats.errors >= 0 and stats.in_flight >= 0 and stats.queued >= 0
    assert stats.load_ms[case.key] > 0
    assert stats.latency_ms[case.key] > 0
