"""Model documents for the adapter server: from the registry, or bare ones without a store.

Adapters take a `ModelVersion` (name, version, tensor specs). With a state store the
documents come from the registry (`models/<name>/<version>.json`), read in a worker thread
and cached for a short while (versions are immutable; a name without a version resolves
to the latest, re-read after `ttl_s`). Without a store a request must name its version and
the document is a bare one (no tensor specs: the adapter asks its backend when it needs
them). Unknown models are `ModelNotFound` (404); names that cannot exist are 400.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from mpfn.adapters.ort_worker.errors import ModelNotFound, ModelUnavailable, WorkerError
from mpfn.documents import NAME_PATTERN, ModelVersion
from mpfn.registry import NotRegistered, Registry
from mpfn.store import StoreError

_NAME = re.compile(NAME_PATTERN)
P = ParamSpec("P")
T = TypeVar("T")


def check_name(value: str, what: str) -> str:
    """Reject names that are not valid model/version names (400)."""
    if not _NAME.fullmatch(value):
        raise WorkerError(f"invalid {what} name {value!r}", 400)
    return value


class ModelCatalog:
    """Resolves `(name, version or None)` to a model document, cached for `ttl_s`."""

    def __init__(self, registry: Registry | None, *, ttl_s: float = 5.0) -> None:
        self.registry = registry
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, str | None], tuple[ModelVersion, float]] = {}

    async def get(self, name: str, version: str | None) -> ModelVersion:
        key = (name, version)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        check_name(name, "model")
        if version is not None:
            check_name(version, "version")
        doc = await self._read(name, version)
        self._cache[key] = (doc, now + self.ttl_s)
        return doc

    async def versions(self, name: str) -> list[str]:
        """Registered versions of `name` (none without a store)."""
        if self.registry is None:
            return []
        check_name(name, "model")
        return await _in_thread(self.registry.versions, name)

    async def all(self) -> list[ModelVersion]:
        """Every registered model version (none without a store)."""
        if self.registry is None:
            return []
        return await _in_thread(self.registry.models)

    async def _read(self, name: str, version: str | None) -> ModelVersion:
        if self.registry is None:
            if version is None:
                raise WorkerError(
                    f"model '{name}': name a version (this server has no model registry)", 400
                )
            return ModelVersion(name=name, version=version, format="other")
        try:
            return await _in_thread(self.registry.model, name, version)
        except NotRegistered as exc:
            raise ModelNotFound(str(exc)) from None


async def _in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Blocking store I/O off the event loop; a failing store is 503."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except StoreError as exc:
        raise ModelUnavailable(f"model store unavailable: {exc}") from None
