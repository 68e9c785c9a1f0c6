"""Session fixtures for the adapter tests: each backend's fixtures (its server started by
`tests.servers`, its contract case) live in `servers_<kind>.py`, imported here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.adapters.servers_openai import llama_server, openai_case
from tests.adapters.servers_ort import demo_artifact, ort_case, ort_server
from tests.adapters.servers_tfserving import tfserving_case, tfserving_server
from tests.adapters.servers_torchserve import torchserve_case, torchserve_models, torchserve_server
from tests.adapters.servers_triton import triton_case, triton_models, triton_server


@pytest.fixture
async def wire() -> AsyncIterator[tuple[httpx.AsyncClient, list[httpx.Response]]]:
    """A client that keeps every response it received (with its request) for inspection."""
    seen: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        seen.append(response)

    async with httpx.AsyncClient(timeout=120, event_hooks={"response": [keep]}) as client:
        yield client, seen


__all__ = [
    "demo_artifact",
    "llama_server",
    "openai_case",
    "ort_case",
    "ort_server",
    "tfserving_case",
    "tfserving_server",
    "torchserve_case",
    "torchserve_models",
    "torchserve_server",
    "triton_case",
    "triton_models",
    "triton_server",
]
