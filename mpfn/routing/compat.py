"""Which adapter kinds can serve which model formats, and which speak which protocol.

The one table from model format to adapter kinds (the router's serving index and the
routing filter both read it), plus the rule for pools that name their models
explicitly, and which kinds answer the router's v2 requests only through an adapter
server. Third-party adapter plug-ins extend the format table with `with_formats` instead
of editing the default; nothing here looks at hardware, policy or load.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal

FormatTable = Mapping[str, frozenset[str]]
Protocol = Literal["v2", "openai"]

DEFAULT_FORMATS: FormatTable = MappingProxyType(
    {
        "onnx": frozenset({"ort", "onnxruntime", "triton", "torchserve"}),
        "torchscript": frozenset({"torchserve", "triton"}),
        "pytorch": frozenset({"torchserve", "triton"}),
        "tensorflow": frozenset({"tfserving", "triton"}),
        "gguf": frozenset({"openai"}),
        "openai": frozenset({"openai"}),
        "other": frozenset({"torchserve", "triton"}),
    }
)
# Adapter kinds that speak the OpenAI-compatible API; every other kind speaks v2.
OPENAI_ADAPTERS = frozenset({"openai"})
# Adapter kinds whose backends do not answer Open Inference Protocol v2 requests as the
# router sends them (TF Serving has only its own REST API; TorchServe's v2 route takes no
# version): their pools must be an adapter server in front of the backend.
NEEDS_ADAPTER_SERVER = frozenset({"tfserving", "torchserve"})


def with_formats(base: FormatTable, fmt: str, adapters: Iterable[str]) -> FormatTable:
    """A copy of `base` where `fmt` may also be served by `adapters`."""
    table = dict(base)
    table[fmt] = table.get(fmt, frozenset()) | frozenset(adapters)
    return MappingProxyType(table)


def adapter_serves(
    adapter: str, fmt: str, *, listed: bool, table: FormatTable = DEFAULT_FORMATS
) -> bool:
    """Can an `adapter` pool serve a model of format `fmt`?

    A pool that lists the model by name (`listed`) serves it whatever the table says: the
    operator vouched for it (custom adapters, `other` formats).
    """
    if listed:
        return True
    kinds = table.get(fmt)
    return kinds is not None and adapter in kinds


def speaks(adapter: str, protocol: Protocol) -> bool:
    """OpenAI routes go to OpenAI-compatible pools only; v2 routes to every other kind."""
    return (adapter in OPENAI_ADAPTERS) == (protocol == "openai")


def missing_adapter_server(adapter: str, adapter_server: bool) -> str | None:
    """Why a pool of kind `adapter` cannot answer the router (its backend does not speak
    v2 and no adapter server fronts it); None when it can."""
    if adapter in NEEDS_ADAPTER_SERVER and not adapter_server:
        return f"{adapter} pool needs an adapter server in front (adapter_server: true)"
    return None
