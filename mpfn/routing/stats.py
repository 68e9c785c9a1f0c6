"""Feedback state of one router: latency averages and load per pool, as immutable values.

`Ewma` is a moving average with the time of its last sample; `decayed` blends a stale
average back towards a fallback so a pool that was slow once is tried again later.
`PoolStats` holds what a pool's answers told us (pool-wide latency, the adapter's
`x-mpfn-inflight`/`x-mpfn-queued` headers, a moving failure rate, the last error, models
known to be loaded); `observe` folds one answer into it. An `x-mpfn-load-ms` header says
the answer paid for loading the model: that time is taken out of the latency sample.
Per-(pool, model) averages are separate `Ewma` values so that updating one never copies
anything sized by the number of models.
The router's own in-flight counts are plain integers it keeps next to these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mpfn.documents import ModelVersion
from mpfn.routing.breaker import Breaker

INFLIGHT = "x-mpfn-inflight"
QUEUED = "x-mpfn-queued"
BATCH_SIZE = "x-mpfn-batch-size"  # rows run together with this answer's
LOAD_MS = "x-mpfn-load-ms"
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
    `error_rate` is a moving average of failures (1) and successes (0), last updated at
    `observed_at`; like latency it fades (towards 0) while the pool gets no traffic.
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
    error_rate: float = 0.0
    observed_at: float = NEVER


EMPTY_STATS = PoolStats()


def is_loaded(stats: PoolStats, ref: str, name: str) -> bool | None:
    """Is the model loaded on the pool? None when the pool never said."""
    if stats.loaded is None:
        return None
    return ref in stats.loaded or name in stats.loaded


def read_count(value: str | None) -> int | None:
    """A count an adapter reports in a header; None when absent, malformed or negative."""
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n >= 0 else None


def read_load_ms(headers: Mapping[str, str]) -> float | None:
    """The model load time an adapter reports in `x-mpfn-load-ms`; None when absent/bad."""
    raw = headers.get(LOAD_MS)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0.0 <= value < 1e9 else None


def error_rate_at(stats: PoolStats, now: float, half_life_s: float) -> float:
    """The failure rate, faded towards 0 by the time since the pool last answered."""
    rate = stats.error_rate
    if rate <= 0.0:
        return 0.0
    age = now - stats.observed_at
    return rate if age <= 0.0 else rate * 0.5 ** (age / half_life_s)


def read_load(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """(in-flight, queued) reported by an adapter; None when absent or malformed."""
    inflight = read_count(headers.get(INFLIGHT))
    queued = read_count(headers.get(QUEUED))
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
    error_alpha: float = 0.1,
    half_life_s: float = 60.0,
) -> PoolStats:
    """Fold one answer into `stats`.

    Successful answers update the latency average and mark `ref` (the model version
    that answered) loaded; failures record `error`. Load headers and the failure rate
    update either way.
    """
    rate = error_rate_at(stats, now, half_life_s)
    rate += error_alpha * ((0.0 if ok else 1.0) - rate)
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
            rate,
            now,
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
        rate,
        now,
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
