"""The feedback a router instance accumulates, kept in one place and updated in place.

`RoutingState` owns the dictionaries a `Feedback` view reads: pool stats, per-(pool,
model) latency averages, the router's own in-flight counts, circuit breakers and smooth
round-robin weights. Each update applies one of the pure functions of this package to one
entry, so the cost per request is constant. It is meant for one event loop (no locks)
and does no I/O; snapshots go in and out as `PoolStatsDocument` values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mpfn.documents import ModelVersion
from mpfn.routing.breaker import (
    CLOSED,
    DEFAULT_BREAKER,
    Breaker,
    BreakerConfig,
    current,
    on_abandon,
    on_attempt,
    on_failure,
    on_success,
)
from mpfn.routing.route import Decision
from mpfn.routing.stats import (
    EMPTY_STATS,
    LOAD_MS,
    Ewma,
    Feedback,
    PoolStats,
    ewma_update,
    is_loaded,
    model_ref,
    observe,
    read_load_ms,
)
from mpfn.routing.statsdoc import PoolStatsDocument, from_document, to_document
from mpfn.routing.tuning import DEFAULT_CONFIG, RoutingConfig


class RoutingState:
    """Mutable feedback of one router; `feedback` is the read-only view `route` takes."""

    def __init__(
        self, cfg: RoutingConfig = DEFAULT_CONFIG, breaker_cfg: BreakerConfig = DEFAULT_BREAKER
    ) -> None:
        self.cfg = cfg
        self.breaker_cfg = breaker_cfg
        self._stats: dict[str, PoolStats] = {}
        self._latency: dict[tuple[str, str], Ewma] = {}
        self._inflight: dict[str, int] = {}
        self._breakers: dict[str, Breaker] = {}
        self._wrr: dict[str, Mapping[str, float]] = {}
        self.feedback = Feedback(
            self._stats, self._latency, self._inflight, self._breakers, self._wrr
        )

    def commit(self, decision: Decision) -> None:
        """Keep the round-robin weights `decision` advanced."""
        if decision.wrr_key:
            self._wrr[decision.wrr_key] = decision.wrr_next

    def started(self, pool_id: str, now: float) -> None:
        """A request was sent to `pool_id`."""
        self._inflight[pool_id] = self._inflight.get(pool_id, 0) + 1
        b = self._breakers.get(pool_id)
        if b is not None and b is not CLOSED:
            self._breakers[pool_id] = on_attempt(b, now, self.breaker_cfg)

    def finished(
        self,
        pool_id: str,
        model: ModelVersion,
        latency_ms: float,
        ok: bool,
        headers: Mapping[str, str],
        now: float,
        error: str | None = None,
    ) -> None:
        """The request to `pool_id` ended: `ok`, or failed (connection, timeout, 5xx).

        The first success of a model on a pool not known to hold it probably paid for
        loading it, so it marks the model loaded without feeding the latency average,
        unless the adapter said how long the load took (`x-mpfn-load-ms`): then that
        time is taken out of the sample and the rest counts.
        """
        n = self._inflight.get(pool_id, 0)
        self._inflight[pool_id] = n - 1 if n > 0 else 0
        stats = self._stats.get(pool_id, EMPTY_STATS)
        ref = model_ref(model)
        if ok:
            key = (pool_id, ref)
            was_loaded = is_loaded(stats, ref, model.name)
            load_ms = read_load_ms(headers) if LOAD_MS in headers else None
            if load_ms is not None:
                latency_ms = latency_ms - load_ms if latency_ms > load_ms else 0.0
                was_loaded = True
            if was_loaded or key in self._latency:
                self._latency[key] = ewma_update(
                    self._latency.get(key), latency_ms, now, self.cfg.ewma_alpha
                )
        cfg = self.cfg
        self._stats[pool_id] = observe(
            stats,
            latency_ms,
            ok,
            headers,
            now,
            alpha=cfg.ewma_alpha,
            ref=ref,
            error=error,
            error_alpha=cfg.error_alpha,
            half_life_s=cfg.stale_half_life_s,
        )
        b = self._breakers.get(pool_id, CLOSED)
        nb = on_success(b, now, self.breaker_cfg) if ok else on_failure(b, now, self.breaker_cfg)
        if nb is not b:
            self._breakers[pool_id] = nb

    def abandoned(self, pool_id: str) -> None:
        """The request to `pool_id` was given up before its outcome was known (the
        client went away): it is no longer in flight and says nothing about the pool."""
        n = self._inflight.get(pool_id, 0)
        self._inflight[pool_id] = n - 1 if n > 0 else 0
        b = self._breakers.get(pool_id)
        if b is not None and b is not CLOSED:
            self._breakers[pool_id] = on_abandon(b)

    def breaker(self, pool_id: str, now: float) -> str:
        """`closed`, `open` or `half-open`."""
        return current(self._breakers.get(pool_id, CLOSED), now, self.breaker_cfg)

    def load(self, docs: Iterable[PoolStatsDocument]) -> None:
        """Start from snapshots; averages this router measured itself win if newer."""
        for doc in docs:
            stats, models = from_document(doc)
            mine = self._stats.get(doc.pool)
            if mine is None or (
                mine.latency is None
                or (stats.latency is not None and stats.latency.at > mine.latency.at)
            ):
                self._stats[doc.pool] = stats
            for ref, avg in models.items():
                key = (doc.pool, ref)
                have = self._latency.get(key)
                if have is None or avg.at > have.at:
                    self._latency[key] = avg

    def snapshot(self, pool_id: str, now: float) -> PoolStatsDocument:
        """This router's view of one pool as a `stats/<pool>.json` document.

        Scans the per-model averages, so it is for background writers, not requests.
        """
        models = {ref: e for (p, ref), e in self._latency.items() if p == pool_id}
        return to_document(pool_id, self._stats.get(pool_id, EMPTY_STATS), models, now)
