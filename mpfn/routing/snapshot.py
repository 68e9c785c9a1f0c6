"""The router's in-memory view of the registry: models, pools, policies and stats.

`build_snapshot` is pure and precomputes, per model and protocol, the pools that can
serve it, the version a version-less request means and, lazily, its fallback chain, so
the hot path is dictionary lookups. `SnapshotLoader` reads the documents with
conditional GETs (ETag per key) and is called from a background task or lazily, never
per request; when the store fails it raises and the caller keeps serving the last
snapshot. `stats/<pool>.json` documents are read the same way; only changed ones are
handed to the routing state. With API keys on, `keys/<id>.json` documents (hashes, never
secrets) are read with the registry, so revocations take effect at the next refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar, get_args

from pydantic import BaseModel

from mpfn.auth import ApiKey, keys_prefix
from mpfn.documents import Hardware, ModelVersion, Policy, Pool
from mpfn.routing import PoolStatsDocument, fallback_chain, policy_for, speaks
from mpfn.routing.serving import Protocol, serving_pools
from mpfn.routing.versions import latest_version
from mpfn.scaling.size import SCALING_PREFIX, PoolSize
from mpfn.state import InvalidDocument, parse_document
from mpfn.store.base import KeyNotFound, Store

log = logging.getLogger("mpfn.router")

PROTOCOLS: tuple[Protocol, ...] = ("v2", "openai")
ANY_VERSION = "*"  # the version of a model known only because pools list it
ALL_HARDWARE: list[Hardware] = list(get_args(Hardware))


def listed_model(name: str) -> ModelVersion:
    """A stand-in version for a model no document describes but pools list by name:
    format `other`, any hardware (the pool vouched for it)."""
    return ModelVersion.model_construct(
        name=name,
        version=ANY_VERSION,
        format="other",
        artifact=None,
        inputs=[],
        outputs=[],
        hardware=ALL_HARDWARE,
        memory_mb=0.0,
        load_time_ms=None,
        labels={},
    )


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of the registry; immutable, swapped whole on refresh."""

    models: Mapping[str, Mapping[str, ModelVersion]] = field(default_factory=dict)
    pools: tuple[Pool, ...] = ()
    policies: Mapping[str, Policy] = field(default_factory=dict)
    # (protocol, model) -> pools able to serve it; only known models have an entry.
    index: Mapping[tuple[str, str], tuple[Pool, ...]] = field(default_factory=dict)
    listed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # (protocol, model) -> its versions (a stand-in for models only pools list)
    versions: Mapping[tuple[str, str], Mapping[str, ModelVersion]] = field(default_factory=dict)
    latest: Mapping[str, str] = field(default_factory=dict)
    # key id -> API key document (only read when the router checks keys)
    keys: Mapping[str, ApiKey] = field(default_factory=dict)
    # pool id -> when it was set to zero replicas (pools with `scaling` at zero: asleep)
    asleep: Mapping[str, float] = field(default_factory=dict)
    loaded: bool = False
    _chains: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    # what `mpfn.routing.decide` derives once per snapshot for requests without hints
    memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    def pools_for(self, model: str, protocol: Protocol) -> tuple[Pool, ...] | None:
        """Serving pools, or None when the model is unknown over `protocol`."""
        return self.index.get((protocol, model))

    def versions_for(self, model: str, protocol: Protocol) -> Mapping[str, ModelVersion] | None:
        """The model's versions over `protocol`; None when it is unknown there."""
        return self.versions.get((protocol, model))

    def protocol_pools(self, protocol: Protocol) -> tuple[Pool, ...]:
        """Every pool speaking `protocol` (to explain why the others were left out)."""
        return tuple(p for p in self.pools if speaks(p.adapter, protocol))

    def policy_for(self, model: str) -> Policy | None:
        return policy_for(self.policies, model)

    def fallbacks(self, model: str) -> tuple[str, ...]:
        """The models to try after `model` (its policy's fallbacks, expanded); cached."""
        chain = self._chains.get(model)
        if chain is None:
            chain = fallback_chain(model, self.policies)[1:]
            self._chains[model] = chain
        return chain

    def known(self, model: str) -> bool:
        return model in self.models or any(model in names for names in self.listed.values())

    def model_names(self, protocol: Protocol) -> list[str]:
        return sorted(name for (proto, name) in self.index if proto == protocol)


def build_snapshot(
    models: Iterable[ModelVersion],
    pools: Iterable[Pool],
    policies: Iterable[Policy],
    keys: Iterable[ApiKey] = (),
    sizes: Iterable[PoolSize] = (),
) -> Snapshot:
    """Assemble a snapshot and its serving index from validated documents; `sizes`
    (`scaling/<pool>.json`) tell which scalable pools are at zero replicas."""
    by_name: dict[str, dict[str, ModelVersion]] = {}
    for mv in models:
        by_name.setdefault(mv.name, {})[mv.version] = mv
    latest = {name: latest_version(versions) for name, versions in by_name.items()}
    pool_list = tuple(sorted(pools, key=lambda p: p.id))
    listed: dict[str, frozenset[str]] = {
        proto: frozenset(name for p in pool_list if speaks(p.adapter, proto) for name in p.models)
        for proto in PROTOCOLS
    }
    index: dict[tuple[str, str], tuple[Pool, ...]] = {}
    versions: dict[tuple[str, str], Mapping[str, ModelVersion]] = {}
    for proto in PROTOCOLS:
        for name in set(by_name) | listed[proto]:
            registered = by_name.get(name)
            fmt = registered[latest[name]].format if registered else None
            tensor_model = fmt is not None and fmt not in ("gguf", "openai")
            if proto == "openai" and tensor_model and name not in listed[proto]:
                continue  # a tensor model is not an OpenAI model
            index[(proto, name)] = serving_pools(pool_list, name, fmt, proto)
            versions[(proto, name)] = registered or {ANY_VERSION: listed_model(name)}
    return Snapshot(
        models=by_name,
        pools=pool_list,
        policies={p.name: p for p in policies},
        index=index,
        listed=listed,
        versions=versions,
        latest=latest,
        keys={k.id: k for k in keys},
        asleep=asleep_pools(pool_list, sizes),
        loaded=True,
    )


def asleep_pools(pools: Iterable[Pool], sizes: Iterable[PoolSize]) -> dict[str, float]:
    """Scalable pools whose recorded size is zero, with when it was set. Cloud Run pools
    never are: Cloud Run starts an instance for a request itself."""
    scalable = {p.id for p in pools if p.scaling is not None and p.scaling.kind != "cloudrun"}
    return {s.pool: s.changed_at for s in sizes if s.replicas == 0 and s.pool in scalable}


D = TypeVar("D", bound=BaseModel)


class SnapshotLoader:
    """Reads the registry with one conditional GET per document, reusing unchanged ones.

    Raises `StoreError` when the store cannot be listed or read, so the caller can keep
    its last snapshot (stale-if-error). An invalid document keeps its last good version.
    """

    def __init__(self, store: Store, *, with_keys: bool = False) -> None:
        self.store = store
        self.with_keys = with_keys
        self._cache: dict[str, tuple[str, BaseModel]] = {}
        # key -> ETag of its invalid version, reported once and not re-read while unchanged
        self._invalid: dict[str, str] = {}
        self.reads = 0  # conditional GETs that returned a new body

    def _load(self, prefix: str, cls: type[D], changed: list[D] | None = None) -> list[D]:
        docs: list[D] = []
        seen: set[str] = set()
        for key in self.store.list(prefix):
            if not key.endswith(".json"):
                continue
            cached = self._cache.get(key)
            known = self._invalid.get(key) or (cached[0] if cached else None)
            try:
                blob = self.store.get(key, if_none_match=known)
            except KeyNotFound:
                continue  # deleted between list and get
            seen.add(key)
            if blob is not None:
                try:
                    doc = parse_document(key, blob.body, cls)
                except InvalidDocument as exc:
                    self._invalid[key] = blob.etag
                    log.warning("%s; keeping the last good copy", exc)
                else:
                    self._invalid.pop(key, None)
                    self.reads += 1
                    self._cache[key] = (blob.etag, doc)
                    cached = self._cache[key]
                    if changed is not None:
                        changed.append(doc)
            if cached is not None and isinstance(cached[1], cls):
                docs.append(cached[1])
        for key in [k for k in self._cache if k.startswith(prefix) and k not in seen]:
            del self._cache[key]
        for key in [k for k in self._invalid if k.startswith(prefix) and k not in seen]:
            del self._invalid[key]
        return docs

    def load(self) -> Snapshot:
        return build_snapshot(
            self._load("models/", ModelVersion),
            self._load("pools/", Pool),
            self._load("policies/", Policy),
            self._load(keys_prefix(), ApiKey) if self.with_keys else (),
            self._load(SCALING_PREFIX, PoolSize),
        )

    def load_stats(self) -> list[PoolStatsDocument]:
        """`stats/<pool>.json` documents that are new or changed since the last call."""
        changed: list[PoolStatsDocument] = []
        self._load("stats/", PoolStatsDocument, changed)
        return changed
