"""Adaptive concurrency limits per pool, as pure functions (AIMD on latency and busy answers).

A router sends a pool at most `limit` requests at once. The limit starts at
`initial(pool capacity)` and adapts to what the router observes:

- when the pool reports its own queue (`x-mpfn-queued`, as mpfn's worker does), that is
  the signal: an answer with no request waiting behind it raises the limit by 1/limit
  (about +1 per limit's worth of answers: additive increase), one with more than
  `queue_target` waiting lowers it (0 by default: a request waiting at the pool only
  lengthens answers, since the router's own line holds it as well and sends it where a
  slot frees first; a batching pool's rows collected for its next batch do not count);
- otherwise latency is: a success within `tolerance` x the pool's no-load latency raises
  it, a slower one lowers it;
- a busy answer (the pool said 503 + Retry-After or 429: its own queue is full) lowers it;
- lowering multiplies by `backoff` (multiplicative decrease), at most once per
  `decrease_interval_s`, so one burst of slow answers is one decrease, not a collapse;
- the no-load latency is the smallest recent latency, forgotten slowly (`drift` per second
  of age), so a pool that really became slower gets a new baseline.

`Limit` values are immutable; every function takes the current value and returns the next.
Nothing here reads a clock, keeps state or does I/O; the router's admission queue
(`mpfn.functions.router.admission`) holds the values and the waiting requests.
"""

from __future__ import annotations

import math
from collections.abc import Container
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["ok", "busy", "failure"]


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    """`per_capacity`: initial limit per unit of the pool's declared `capacity`;
    `min_limit`/`max_limit`: bounds of the limit; `tolerance`: latency above this many
    times the no-load latency counts as queueing; `backoff`: factor of a decrease;
    `decrease_interval_s`: least time between two decreases; `drift`: how fast the
    no-load latency estimate forgets its minimum (fraction per second); `queue_target`:
    requests a pool may report waiting before the limit goes down."""

    per_capacity: float = 2.0
    min_limit: float = 1.0
    max_limit: float = 256.0
    tolerance: float = 2.0
    backoff: float = 0.8
    decrease_interval_s: float = 0.05
    drift: float = 0.01
    queue_target: int = 0

    def __post_init__(self) -> None:
        if not 1.0 <= self.min_limit <= self.max_limit:
            raise ValueError("need 1 <= min_limit <= max_limit")
        if not 0.0 < self.backoff < 1.0 or self.tolerance <= 1.0 or self.per_capacity <= 0:
            raise ValueError("need 0 < backoff < 1, tolerance > 1 and per_capacity > 0")


DEFAULT_ADMISSION = AdmissionConfig()


@dataclass(frozen=True, slots=True)
class Limit:
    """`value`: requests the pool may have in flight from this router (fractional while
    it grows); `base_ms`: no-load latency estimate (0: none yet), as of `base_at`;
    `decreased_at`: when the limit last went down."""

    value: float
    base_ms: float = 0.0
    base_at: float = 0.0
    decreased_at: float = -math.inf

    @property
    def slots(self) -> int:
        """Whole requests admitted at once."""
        return max(1, int(self.value))


def initial(capacity: int, cfg: AdmissionConfig = DEFAULT_ADMISSION) -> Limit:
    """The limit of a pool the router has not observed yet."""
    return Limit(_clamp(max(capacity, 1) * cfg.per_capacity, cfg))


def baseline(limit: Limit, now: float, cfg: AdmissionConfig = DEFAULT_ADMISSION) -> float:
    """The no-load latency estimate at `now` (grows by `drift` per second of age)."""
    if limit.base_ms <= 0.0:
        return 0.0
    return limit.base_ms * (1.0 + cfg.drift * max(0.0, now - limit.base_at))


def observe(
    limit: Limit,
    outcome: Outcome,
    latency_ms: float,
    now: float,
    cfg: AdmissionConfig = DEFAULT_ADMISSION,
    queued: int | None = None,
) -> Limit:
    """The limit after one answer from the pool; `queued` is the queue the pool reported
    with it (None: it reports none). Failures (connection errors, timeouts, 5xx) are the
    circuit breaker's business and leave the limit as it is."""
    if outcome == "failure":
        return limit
    if outcome == "busy":
        return _decrease(limit, now, cfg)
    base = baseline(limit, now, cfg)
    if base <= 0.0 or latency_ms <= base:
        limit = Limit(limit.value, max(latency_ms, 1e-3), now, limit.decreased_at)
        base = limit.base_ms
    if queued is not None:
        if queued > cfg.queue_target:
            return _decrease(limit, now, cfg)
        if queued > 0:
            return limit
    elif latency_ms > cfg.tolerance * base:
        return _decrease(limit, now, cfg)
    grown = _clamp(limit.value + 1.0 / limit.value, cfg)
    return Limit(grown, limit.base_ms, limit.base_at, limit.decreased_at)


def _decrease(limit: Limit, now: float, cfg: AdmissionConfig) -> Limit:
    if now - limit.decreased_at < cfg.decrease_interval_s:
        return limit
    return Limit(_clamp(limit.value * cfg.backoff, cfg), limit.base_ms, limit.base_at, now)


def _clamp(value: float, cfg: AdmissionConfig) -> float:
    return min(cfg.max_limit, max(cfg.min_limit, value))


def classify(status: int, headers: Container[str]) -> Outcome:
    """What an answer says about the pool: `busy` for backpressure (429, or 503 with
    `Retry-After`: the pool is healthy and full), `failure` for other retryable 5xx
    (not 501/505), else `ok`. `headers` maps lower-case names (or any case-insensitive mapping)."""
    if status == 429:
        return "busy"
    if status == 503 and "retry-after" in headers:
        return "busy"
    if 500 <= status < 600 and status not in (501, 505):
        return "failure"
    return "ok"
