"""The router's in-memory view of the registry: models, pools and policies.

`build_snapshot` is pure and precomputes, per model, the pools that can serve it, so the
hot path is a dictionary lookup. `SnapshotLoader` reads the documents with conditional
GETs (ETag per key) and is called from a background task or lazily, never per request;
when the store fails it raises and the caller keeps serving the last snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from mpfn.documents import ModelVersion, Policy, Pool
from mpfn.router.routing import Protocol, model_format, serving_pools
from mpfn.state import InvalidDocument, parse_document
from mpfn.store.base import KeyNotFound, Store

log = logging.getLogger("mpfn.router")

PROTOCOLS: tuple[Protocol, ...] = ("v2", "openai")


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of the registry; immutable, swapped whole on refresh."""

    models: Mapping[str, Mapping[str, ModelVersion]] = field(default_factory=dict)
    pools: tuple[Pool, ...] = ()
    policies: Mapping[str, Policy] = field(default_factory=dict)
    # (protocol, model) -> pools able to serve it; only known models have an entry.
    index: Mapping[tuple[str, str], tuple[Pool, ...]] = field(default_factory=dict)
    listed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    loaded: bool = False

    def pools_for(self, model: str, protocol: Protocol) -> tuple[Pool, ...] | None:
        """Serving pools, or None when the model is unknown over `protocol`."""
        return self.index.get((protocol, model))

    def listed_by_pools(self, model: str, protocol: Protocol) -> bool:
        return model in self.listed.get(protocol, frozenset())

    def policy_for(self, model: str) -> Policy | None:
        return self.policies.get(model) or self.policies.get("default")

    def known(self, model: str) -> bool:
        return model in self.models or any(model in names for names in self.listed.values())

    def model_names(self, protocol: Protocol) -> list[str]:
        return sorted(name for (proto, name) in self.index if proto == protocol)


def build_snapshot(
    models: Iterable[ModelVersion], pools: Iterable[Pool], policies: Iterable[Policy]
) -> Snapshot:
    """Assemble a snapshot and its serving index from validated documents."""
    by_name: dict[str, dict[str, ModelVersion]] = {}
    for mv in models:
        by_name.setdefault(mv.name, {})[mv.version] = mv
    pool_list = tuple(sorted(pools, key=lambda p: p.id))
    listed: dict[str, frozenset[str]] = {
        proto: frozenset(
            name
            for p in pool_list
            if (p.adapter == "openai") == (proto == "openai")
            for name in p.models
        )
        for proto in PROTOCOLS
    }
    index: dict[tuple[str, str], tuple[Pool, ...]] = {}
    for proto in PROTOCOLS:
        for name in set(by_name) | listed[proto]:
            fmt = model_format(by_name.get(name))
            tensor_model = fmt is not None and fmt not in ("gguf", "openai")
            if proto == "openai" and tensor_model and name not in listed[proto]:
                continue  # a tensor model is not an OpenAI model
            index[(proto, name)] = serving_pools(pool_list, name, fmt, proto)
    return Snapshot(
        models=by_name,
        pools=pool_list,
        policies={p.name: p for p in policies},
        index=index,
        listed=listed,
        loaded=True,
    )


D = TypeVar("D", bound=BaseModel)


class SnapshotLoader:
    """Reads the registry with one conditional GET per document, reusing unchanged ones.

    Raises `StoreError` when the store cannot be listed or read, so the caller can keep
    its last snapshot (stale-if-error). An invalid document keeps its last good version.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, tuple[str, BaseModel]] = {}
        self.reads = 0  # conditional GETs that returned a new body

    def _load(self, prefix: str, cls: type[D]) -> list[D]:
        docs: list[D] = []
        seen: set[str] = set()
        for key in self.store.list(prefix):
            if not key.endswith(".json"):
                continue
            cached = self._cache.get(key)
            try:
                blob = self.store.get(key, if_none_match=cached[0] if cached else None)
            except KeyNotFound:
                continue  # deleted between list and get
            seen.add(key)
            if blob is not None:
                try:
                    doc = parse_document(key, blob.body, cls)
                except InvalidDocument as exc:
                    log.warning("%s; keeping the last good copy", exc)
                else:
                    self.reads += 1
                    self._cache[key] = (blob.etag, doc)
                    cached = self._cache[key]
            if cached is not None and isinstance(cached[1], cls):
                docs.append(cached[1])
        for key in [k for k in self._cache if k.startswith(prefix) and k not in seen]:
            del self._cache[key]
        return docs

    def load(self) -> Snapshot:
        return build_snapshot(
            self._load("models/", ModelVersion),
            self._load("pools/", Pool),
            self._load("policies/", Policy),
        )
