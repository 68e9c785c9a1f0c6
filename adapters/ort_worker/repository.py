"""The worker's model repository: documents from the store, sessions in memory, LRU budget.

Hot path: `loaded_for` finds a resident model with no I/O. Cold path: `acquire`/`load` read
the `models/<name>/<version>.json` document, fetch the verified artifact into the local
cache, open a session in a thread and evict least-recently-used idle models to stay under
the memory budget. Concurrent requests for the same cold model share one load.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from mpfn.adapters.ort_worker.batching import (
    BatchDefaults,
    probe_problem,
    resolve_limits,
    signature_problem,
)
from mpfn.adapters.ort_worker.errors import ModelNotFound, ModelUnavailable, WorkerError
from mpfn.adapters.ort_worker.lru import (
    Resident,
    choose_evictions,
    estimate_memory_mb,
    latest_version,
)
from mpfn.adapters.ort_worker.metrics import WorkerMetrics
from mpfn.adapters.ort_worker.providers import choose_providers
from mpfn.adapters.ort_worker.session import LoadedModel, open_session
from mpfn.artifacts import ArtifactError, fetch_cached
from mpfn.documents import NAME_PATTERN, ModelVersion, Policy, model_key, policy_key
from mpfn.state import Documents, InvalidDocument
from mpfn.store import KeyNotFound, Store, StoreError

log = logging.getLogger("mpfn.worker")

_NAME = re.compile(NAME_PATTERN)
_MODELS = "models/"


@dataclass(frozen=True, slots=True)
class RepositoryConfig:
    cache_dir: Path
    budget_mb: float = 0.0
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 0
    insecure: bool = False
    batching: BatchDefaults = field(default_factory=BatchDefaults)


class ModelRepository:
    """Loaded models keyed `name/version`, plus the store they come from."""

    def __init__(self, store: Store, config: RepositoryConfig, metrics: WorkerMetrics) -> None:
        self.store = store
        self.documents = Documents(store)
        self.config = config
        self.metrics = metrics
        self.providers = choose_providers(config.providers, ort.get_available_providers())
        self.loaded: dict[str, LoadedModel] = {}
        self._latest: dict[str, LoadedModel] = {}  # name -> highest loaded version
        self._loading: dict[str, asyncio.Future[LoadedModel]] = {}
        self._reserved: dict[str, float] = {}
        self._tick = 0

    # -- hot path ------------------------------------------------------------------------

    def loaded_for(self, name: str, version: str | None) -> LoadedModel | None:
        """The resident model for a request: that version, or the highest loaded one."""
        if version is None:
            return self._latest.get(name)
        return self.loaded.get(f"{name}/{version}")

    def pin(self, model: LoadedModel) -> LoadedModel:
        """Mark a request in flight on `model` (it will not be evicted) and bump its recency."""
        self._tick += 1
        model.last_used = self._tick
        model.inflight += 1
        return model

    async def acquire(self, name: str, version: str | None) -> tuple[LoadedModel, bool]:
        """The pinned model to serve a request and whether this request waited for a load."""
        model = self.loaded_for(name, version)
        if model is not None:
            return self.pin(model), False
        model = await self.load(name, version)
        return self.pin(model), True

    # -- documents -----------------------------------------------------------------------

    async def versions(self, name: str) -> list[str]:
        """Versions of `name` with documents in the store (unsorted)."""
        check_name(name)
        keys = await _in_thread(self.store.list, f"{_MODELS}{name}/")
        return [
            key[len(_MODELS) + len(name) + 1 : -len(".json")]
            for key in keys
            if key.endswith(".json") and "/" not in key[len(_MODELS) + len(name) + 1 :]
        ]

    async def resolve_version(self, name: str, version: str | None) -> str:
        if version is not None:
            check_name(version, "version")
            return version
        loaded = self.loaded_for(name, None)
        if loaded is not None:
            return loaded.doc.version
        latest = latest_version(await self.versions(name))
        if latest is None:
            raise ModelNotFound(f"model '{name}' not found")
        return latest

    async def document(self, name: str, version: str | None) -> ModelVersion:
        """The model's document: the loaded copy, else read from the store."""
        check_name(name)
        loaded = self.loaded_for(name, version)
        if loaded is not None:
            return loaded.doc
        version = await self.resolve_version(name, version)
        key = model_key(name, version)
        try:
            return await _in_thread(self.documents.get, key, ModelVersion)
        except KeyNotFound:
            raise ModelNotFound(f"model '{name}' version '{version}' not found") from None
        except InvalidDocument as exc:
            raise ModelUnavailable(str(exc)) from None

    # -- load / unload -------------------------------------------------------------------

    async def load(self, name: str, version: str | None) -> LoadedModel:
        """Load (or return the already loaded) model version; shares concurrent loads."""
        check_name(name)
        version = await self.resolve_version(name, version)
        key = f"{name}/{version}"
        if key in self.loaded:
            return self.loaded[key]
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[key] = pending
            try:
                pending.set_result(await self._load(name, version))
            except asyncio.CancelledError:
                pending.cancel()
                raise
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # consumed here; waiters re-raise their own copy
                raise
            finally:
                del self._loading[key]
        return await asyncio.shield(pending)

    async def _load(self, name: str, version: str) -> LoadedModel:
        key = f"{name}/{version}"
        doc = await self.document(name, version)
        if doc.format != "onnx":
            raise WorkerError(
                f"model '{name}' version '{version}' is {doc.format}; this worker serves onnx",
                400,
            )
        if doc.artifact is None:
            raise ModelUnavailable(f"model '{name}' version '{version}' has no artifact")
        memory_mb = estimate_memory_mb(doc.memory_mb, doc.artifact.size)
        self._make_room(key, memory_mb)
        self._reserved[key] = memory_mb
        started = time.perf_counter()
        try:
            session = await _in_thread(self._open, doc)
        except BaseException:
            self.metrics.loads.labels(name, "error").inc()
            raise
        finally:
            del self._reserved[key]
        load_ms = (time.perf_counter() - started) * 1000
        model = LoadedModel.create(doc, session, memory_mb, load_ms)
        await self._configure_batching(model)
        self._make_room(key, memory_mb)  # other loads may have finished meanwhile
        self._add(model)
        self.metrics.loads.labels(name, "ok").inc()
        self.metrics.load_seconds.observe(load_ms / 1000)
        log.info("loaded %s in %.1f ms on %s", key, load_ms, ",".join(model.providers))
        return model

    async def _configure_batching(self, model: LoadedModel) -> None:
        """Turn batching on for `model` when its document or the worker asks for it and
        its signature and the bit-identity probe allow it."""
        doc, defaults = model.doc, self.config.batching
        if not resolve_limits(doc.batching, defaults, None).enabled:
            return
        limits = resolve_limits(doc.batching, defaults, await self._latency_slo_ms(doc.name))
        session = model.session
        problem = signature_problem(session.get_inputs(), session.get_outputs())
        if problem is None:
            problem = await asyncio.to_thread(probe_problem, session)
        if problem is not None:
            model.batch_note = problem
            log.warning("%s is not batched: %s", model.key, problem)
            return
        model.batch_limits = limits

    async def _latency_slo_ms(self, name: str) -> float | None:
        """`latency_slo_ms` of the routing policy of `name`, else of `default`, if set."""
        for policy in (name, "default"):
            try:
                doc = await asyncio.to_thread(self.documents.get, policy_key(policy), Policy)
            except KeyNotFound:
                continue
            except Exception as exc:  # a policy is a hint here: never fail a load over it
                log.warning("cannot read policy %s: %s", policy, exc)
                return None
            return doc.latency_slo_ms  # the model's own policy wins, as in the router
        return None

    def _open(self, doc: ModelVersion) -> ort.InferenceSession:
        assert doc.artifact is not None
        try:
            path = fetch_cached(
                self.store, doc.artifact, self.config.cache_dir, insecure=self.config.insecure
            )
        except (ArtifactError, StoreError) as exc:
            raise ModelUnavailable(f"cannot fetch artifact of {doc.key}: {exc}") from None
        try:
            return open_session(path, self.providers, self.config.intra_op_threads)
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            raise ModelUnavailable(f"cannot load {doc.key}: {exc}") from None

    def _make_room(self, key: str, memory_mb: float) -> None:
        residents = [
            Resident(m.key, m.memory_mb, m.last_used, m.inflight) for m in self.loaded.values()
        ] + [Resident(k, mb, 0, 1) for k, mb in self._reserved.items()]
        evict = choose_evictions(residents, memory_mb, self.config.budget_mb)
        if evict is None and memory_mb > self.config.budget_mb:
            raise ModelUnavailable(
                f"{key} needs {memory_mb:g} MB, more than the worker's whole memory budget "
                f"of {self.config.budget_mb:g} MB",
                507,
            )
        if evict is None:
            raise ModelUnavailable(
                f"not enough memory to load {key}: needs {memory_mb:g} MB, budget "
                f"{self.config.budget_mb:g} MB, {self.memory_used_mb():g} MB held by models "
                "with requests in flight or loading"
            )
        for victim in evict:
            model = self._drop(victim)
            self.metrics.evictions.labels(model.doc.name).inc()
            log.info("evicted %s to make room for %s", victim, key)

    def unload(self, name: str, version: str | None) -> list[str]:
        """Unload one version, or every loaded version of `name`; returns the versions.

        Requests already running keep their session until they finish.
        """
        check_name(name)
        victims = [
            key
            for key, m in self.loaded.items()
            if m.doc.name == name and (version is None or m.doc.version == version)
        ]
        for key in victims:
            self._drop(key)
        return [key.split("/", 1)[1] for key in victims]

    def _add(self, model: LoadedModel) -> None:
        self.loaded[model.key] = model
        self._refresh_latest(model.doc.name)

    def _drop(self, key: str) -> LoadedModel:
        model = self.loaded.pop(key)
        self._refresh_latest(model.doc.name)
        return model

    def _refresh_latest(self, name: str) -> None:
        versions = [m.doc.version for m in self.loaded.values() if m.doc.name == name]
        latest = latest_version(versions)
        if latest is None:
            self._latest.pop(name, None)
        else:
            self._latest[name] = self.loaded[f"{name}/{latest}"]

    # -- introspection -------------------------------------------------------------------

    def memory_used_mb(self) -> float:
        return sum(m.memory_mb for m in self.loaded.values()) + sum(self._reserved.values())

    def inflight(self) -> int:
        return sum(m.inflight for m in self.loaded.values())

    async def index(self) -> list[dict[str, Any]]:
        """Every model version in the store or loaded, with its state (repository extension)."""
        keys = await _in_thread(self.store.list, _MODELS)
        found: set[tuple[str, str]] = set()
        for key in keys:
            parts = key[len(_MODELS) :].split("/")
            if len(parts) == 2 and parts[1].endswith(".json"):
                found.add((parts[0], parts[1][: -len(".json")]))
        found.update((m.doc.name, m.doc.version) for m in self.loaded.values())
        rows: list[dict[str, Any]] = []
        for name, version in sorted(found):
            ready = f"{name}/{version}" in self.loaded
            rows.append(
                {
                    "name": name,
                    "version": version,
                    "state": "READY" if ready else "UNAVAILABLE",
                    "reason": "" if ready else "unloaded",
                }
            )
        return rows


def check_name(name: str, what: str = "model") -> str:
    """Reject names that are not valid model/version names (they cannot exist in the store)."""
    if not _NAME.match(name):
        raise ModelNotFound(f"{what} '{name}' not found")
    return name


async def _in_thread(func: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(func, *args)
    except StoreError as exc:
        if isinstance(exc, KeyNotFound | InvalidDocument):
            raise
        raise ModelUnavailable(f"model store unavailable: {exc}") from None
