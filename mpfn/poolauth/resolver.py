"""Resolved secrets, cached for a TTL so a rotated secret is picked up without a restart.

A value is fetched on first use and again once it is older than the TTL; concurrent
callers of one reference share one fetch. When a refresh fails, the last value is kept
(for at most `stale_s` more) and the failure is logged by reference: serving goes on
through a secret store outage, and a secret that cannot be had at all fails the pool
that needs it, with the reference and the reason, never the value.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mpfn.poolauth.refs import SecretRef
from mpfn.poolauth.sources import SecretUnavailable, Sources

log = logging.getLogger("mpfn.poolauth")

DEFAULT_TTL_S = 300.0
DEFAULT_STALE_S = 3600.0


class SecretResolver:
    def __init__(
        self,
        sources: Sources | None = None,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        stale_s: float = DEFAULT_STALE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sources = sources or Sources()
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self.clock = clock
        self._values: dict[SecretRef, tuple[bytes, float]] = {}  # value, fetched at
        self._pending: dict[SecretRef, asyncio.Future[bytes]] = {}

    def __repr__(self) -> str:  # never the values
        return f"SecretResolver(cached={len(self._values)}, ttl_s={self.ttl_s})"

    def fresh(self, ref: SecretRef) -> bytes | None:
        """The cached value when still within the TTL (no I/O)."""
        hit = self._values.get(ref)
        if hit is not None and self.clock() - hit[1] < self.ttl_s:
            return hit[0]
        return None

    def expires_at(self, ref: SecretRef) -> float:
        """When the cached value of `ref` stops being fresh (now, when none is cached)."""
        hit = self._values.get(ref)
        return hit[1] + self.ttl_s if hit is not None else self.clock()

    async def get(self, ref: SecretRef) -> bytes:
        value = self.fresh(ref)
        if value is not None:
            return value
        pending = self._pending.get(ref)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._pending[ref] = pending
            try:
                pending.set_result(await self._refresh(ref))
            except SecretUnavailable as exc:
                pending.set_exception(exc)
            finally:
                del self._pending[ref]
        return await asyncio.shield(pending)

    async def _refresh(self, ref: SecretRef) -> bytes:
        try:
            value = await self.sources.fetch(ref)
        except SecretUnavailable as exc:
            old = self._values.get(ref)
            if old is not None and self.clock() - old[1] < self.ttl_s + self.stale_s:
                log.warning("secret %s: refresh failed (%s); keeping the last value", ref, exc)
                return old[0]
            raise
        self._values[ref] = (value, self.clock())
        return value

    async def aclose(self) -> None:
        await self.sources.aclose()
