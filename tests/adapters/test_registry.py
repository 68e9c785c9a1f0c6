"""Entry-point discovery finds every built-in adapter, and a pool's `adapter` field
instantiates the matching class (the same path third-party plug-ins take)."""

from __future__ import annotations

import importlib

import httpx
import pytest
from pydantic import HttpUrl

from mpfn.adapters import OpenAIAdapter, OrtAdapter, TFServingAdapter, registry
from mpfn.adapters.base import Adapter, AdapterConfig, ChatAdapter
from mpfn.documents import Pool

BUILTIN = {"ort": OrtAdapter, "openai": OpenAIAdapter, "tfserving": TFServingAdapter}


def config(kind: str) -> AdapterConfig:
    pool = Pool(id=f"{kind}-pool", cloud="local", adapter=kind, endpoint=HttpUrl("http://h:1"))
    return AdapterConfig(pool=pool)


def test_entry_points_list_every_builtin_adapter() -> None:
    available = registry.available()
    for kind, cls in BUILTIN.items():
        module, _, name = available[kind].partition(":")
        assert getattr(importlib.import_module(module), name) is cls, available[kind]


@pytest.mark.parametrize("kind", sorted(BUILTIN))
async def test_pool_adapter_field_instantiates_that_adapter(kind: str) -> None:
    async with httpx.AsyncClient() as client:
        adapter = registry.create(config(kind), client=client)
        assert type(adapter) is BUILTIN[kind]
        assert type(adapter).kind == kind
        assert isinstance(adapter, Adapter)
        assert isinstance(adapter, ChatAdapter) == (kind == "openai")
        await adapter.aclose()
        assert not client.is_closed  # an injected client belongs to the caller


def test_unknown_kind_names_the_installed_ones() -> None:
    with pytest.raises(registry.UnknownAdapter, match=r"installed: .*ort"):
        registry.create(config("rocm-nonexistent"))
