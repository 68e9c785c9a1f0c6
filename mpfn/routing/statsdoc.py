"""The `stats/<pool>.json` document: a pool's latency and health, shared across routers.

Routers are stateless and short-lived; a new instance starts from the snapshot the
warmer (or `mpfn stats refresh`) last wrote instead of from priors. This module only
converts between `PoolStats`/`Ewma` values and the pydantic document; reading and
writing it is the caller's business. Times are epoch seconds, so the routing clock
must be wall-clock time wherever snapshots are shared.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from mpfn.documents import NAME_PATTERN
from mpfn.routing.stats import NEVER, Ewma, PoolStats


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatencyAverage(_Doc):
    """A moving average of latency and when it was last updated."""

    ms: float = Field(ge=0)
    at: float
    samples: int = Field(default=1, ge=1)


class PoolStatsDocument(_Doc):
    """Latency averages (pool-wide and per `name/version`), load and errors of one pool."""

    pool: str = Field(pattern=NAME_PATTERN)
    written_at: float
    latency: LatencyAverage | None = None
    models: dict[str, LatencyAverage] = Field(default_factory=dict)
    inflight: int = Field(default=0, ge=0)
    queued: int = Field(default=0, ge=0)
    reported_at: float | None = None
    requests: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    last_error: str | None = Field(default=None, max_length=500)
    last_error_at: float | None = None
    loaded: list[str] | None = None
    error_rate: float = Field(default=0.0, ge=0, le=1)
    observed_at: float | None = None

    @property
    def key(self) -> str:
        return stats_key(self.pool)


def stats_key(pool_id: str) -> str:
    return f"stats/{pool_id}.json"


def _avg(e: Ewma) -> LatencyAverage:
    return LatencyAverage(ms=e.value, at=e.at, samples=e.count)


def _ewma(a: LatencyAverage) -> Ewma:
    return Ewma(a.ms, a.at, a.samples)


def _time(t: float) -> float | None:
    return None if t == NEVER else t


def to_document(
    pool_id: str, stats: PoolStats, models: Mapping[str, Ewma], now: float
) -> PoolStatsDocument:
    """The snapshot of one pool; `models` maps model refs to their averages there."""
    return PoolStatsDocument(
        pool=pool_id,
        written_at=now,
        latency=None if stats.latency is None else _avg(stats.latency),
        models={ref: _avg(e) for ref, e in sorted(models.items())},
        inflight=stats.reported_inflight,
        queued=stats.reported_queued,
        reported_at=_time(stats.reported_at),
        requests=stats.requests,
        errors=stats.errors,
        last_error=None if stats.last_error is None else stats.last_error[:500],
        last_error_at=_time(stats.last_error_at),
        loaded=None if stats.loaded is None else sorted(stats.loaded),
        error_rate=min(1.0, max(0.0, stats.error_rate)),
        observed_at=_time(stats.observed_at),
    )


def from_document(doc: PoolStatsDocument) -> tuple[PoolStats, dict[str, Ewma]]:
    """The `PoolStats` and per-model averages a snapshot describes."""
    stats = PoolStats(
        latency=None if doc.latency is None else _ewma(doc.latency),
        reported_inflight=doc.inflight,
        reported_queued=doc.queued,
        reported_at=NEVER if doc.reported_at is None else doc.reported_at,
        requests=doc.requests,
        errors=doc.errors,
        last_error=doc.last_error,
        last_error_at=NEVER if doc.last_error_at is None else doc.last_error_at,
        loaded=None if doc.loaded is None else frozenset(doc.loaded),
        error_rate=doc.error_rate,
        observed_at=NEVER if doc.observed_at is None else doc.observed_at,
    )
    return stats, {ref: _ewma(a) for ref, a in doc.models.items()}
