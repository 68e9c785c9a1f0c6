"""Feedback state of one router: latency averages and load per pool, as immutable values.

`Ewma` is a moving average with the time of its last sample; `decayed` blends a stale
average back towards a fallback so a pool that was slow once is tried again later.
`PoolStats` holds what a pool's answers told us (pool-wide latency, the adapter's
`x-mpfn-inflight`/`x-mpfn-queued` headers, the last error, models known to be loaded);
`observe` folds one answer into it. Per-(pool, model) averages are separate `Ewma`
values so that updating one never copies anything sized by the number of models.
The router's own in-flight counts are plain integers it keeps next to these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mpfn.documents import ModelVersion
from mpfn.routing.breaker import Breaker

INFLIGHT = "x-mpfn-inflight"
QUEUED = "x-mpfn-queued"
NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class Ewma:
    """An exponentially weighted moving average of latency (ms), last updated `at`."""

    value: float
    at: float
    count: int = 1


def ewma_update(prev: Ewma | None, sample: float, now: float, alpha: float) -> Ewma:
    if prev is None:
        return Ewma(sample, now, 1)
    return Ewma(prev.value + alpha * (sample - prev.value), now, prev.count + 1)


def decayed(avg: Ewma | None, fallback: float, now: float, half_life_s: float) -> float:
    """`avg` blended towards `fallback` by its age: half-way after one half-life."""
    if avg is None:
        return fallback
    age = now - avg.at
    if age <= 0.0:
        return avg.value
    keep = 0.5 ** (age / half_life_s)
    return keep * avg.value + (1.0 - keep) * fallback


def model_ref(model: ModelVersion) -> str:
    """How a loaded model version is named in `PoolStats.loaded`."""
    return f"{model.name}/{model.version}"


@dataclass(frozen=True, slots=True)
class PoolStats:
    """What a pool's answers and snapshots said about it.

    `loaded` holds model refs (`name/version`, or a bare `name` for any version);
    None means unknown. `reported_*` come from the adapter's headers at `reported_at`.
    """

    latency: Ewma | None = None
    reported_inflight: int = 0
    reported_queued: int = 0
    reported_at: float = NEVER
    requests: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_at: float = NEVER
    loaded: frozenset[str] | None = None


EMPTY_STATS = PoolStats()


def is_loaded(stats: PoolStats, ref: str, name: str) -> bool | None:
    """Is the model loaded on the pool? None when the pool never said."""
    if stats.loaded is None:
        return None
    return ref in stats.loaded or name in stats.loaded


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n >= 0 else None


def read_load(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """(in-flight, queued) reported by an adapter; None when absent or malformed."""
    inflight = _count(headers.get(INFLIGHT))
    queued = _count(headers.get(QUEUED))
    if inflight is None and queued is None:
        return None
    return inflight or 0, queued or 0


def observe(
    stats: PoolStats,
    latency_ms: float,
    ok: bool,
    headers: Mapping[str, str],
    now: float,
    *,
    alpha: float = 0.2,
    ref: str | None = None,
    error: str | None = None,
) -> PoolStats:
    """Fold one answer into `stats`.

    Successful answers update the latency average and mark `ref` (the model version
    that answered) loaded; failures record `error`. Load headers update either way.
    """
    load = read_load(headers)
    inflight, queued, reported_at = (
        (stats.reported_inflight, stats.reported_queued, stats.reported_at)
        if load is None
        else (load[0], load[1], now)
    )
    if not ok:
        return PoolStats(
            stats.latency,
            inflight,
            queued,
            reported_at,
            stats.requests + 1,
            stats.errors + 1,
            error or "error",
            now,
            stats.loaded,
        )
    loaded = stats.loaded
    if ref is not None and (loaded is None or ref not in loaded):
        loaded = frozenset((ref,)) if loaded is None else loaded | {ref}
    return PoolStats(
        ewma_update(stats.latency, latency_ms, now, alpha),
        inflight,
        queued,
        reported_at,
        stats.requests + 1,
        stats.errors,
        stats.last_error,
        stats.last_error_at,
        loaded,
    )


@dataclass(frozen=True, slots=True)
class Feedback:
    """Read-only view of everything a decision learns from past requests.

    `latency` is keyed by (pool id, model ref); `inflight` counts this router's own
    unanswered requests per pool; `wrr` holds smooth round-robin weights per model.
    The mappings may be live dictionaries owned by a `RoutingState`.
    """

    stats: Mapping[str, PoolStats]
    latency: Mapping[tuple[str, str], Ewma]
    inflight: Mapping[str, int]
    breakers: Mapping[str, Breaker]
    wrr: Mapping[str, Mapping[str, float]]


NO_FEEDBACK = Feedback({}, {}, {}, {}, {})
