"""The warmer's decisions, as pure functions: which models to keep warm, where, and what to do.

1. Demand: the expected number of requests within the next `window_s` is the forecast's
   upper bound integrated over that window, or the rate observed over the last `recent_s`
   if that is higher; the chance of at least one request is `1 - exp(-expected)` (Poisson).
2. Warm or not, with hysteresis: a pinned model is always warm; a model is loaded when that
   chance reaches `load_probability` and, once loaded, stays until it falls below
   `keep_probability`; a model used within `keep_alive_s` stays warm too.
3. Where: a warm model's demand goes first to the pools that already hold it, then to the
   cheapest; `mpfn.warm.replicas.desired_replicas` turns it into replicas per pool with the
   min/max clamps, each pool's memory budget and hysteresis. Replicas a warm model already
   has count for hysteresis (so it is not unloaded from pools the router sent it to while
   it stays warm); a model that is no longer warm is unloaded everywhere. A pool that could
   not be read gets no demand and no actions, so the others still get theirs.
4. Actions: load the model's latest version where replicas are wanted and it is not loaded;
   unload every version of a managed model from pools that should hold none. Models the
   store does not know are never touched.

No I/O and no clock: `mpfn.warm.warmer` gathers the inputs and applies the result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mpfn.documents import Pool
from mpfn.forecast import HourlyForecast
from mpfn.warm.plan import Reason, WarmAction, WarmSettings
from mpfn.warm.replicas import ReplicaDemand, desired_replicas

HOUR = 3600.0
MIN_RATE = 1e-9  # requests/s that still make a warm model want one replica


@dataclass(frozen=True)
class ModelSignal:
    """What the warmer knows about one model when it decides."""

    model: str
    version: str  # the version to load
    expected: float  # requests expected within the window (upper bound)
    recent_use: bool  # used within keep_alive_s
    pinned: bool = False
    memory_mb: float = 0.0


@dataclass(frozen=True)
class PoolView:
    """A pool, what it holds (model -> versions; None if unreadable) and what it may serve."""

    pool: Pool
    loaded: Mapping[str, frozenset[str]] | None
    serves: frozenset[str] = field(default_factory=frozenset)


def expected_from_forecast(forecast: HourlyForecast, now: float, window_s: float) -> float:
    """The forecast's upper bound (requests per hour) integrated over [now, now + window_s]."""
    total = 0.0
    end = now + window_s
    for i, upper in enumerate(forecast.upper):
        lo = forecast.start + i * HOUR
        overlap = min(end, lo + HOUR) - max(now, lo)
        if overlap > 0:
            total += max(float(upper), 0.0) * overlap / HOUR
    return total


def expected_from_recent(recent: int, recent_s: float, window_s: float) -> float:
    """Requests within the window if the rate of the last `recent_s` goes on."""
    return recent * window_s / recent_s if recent_s > 0 else 0.0


def request_probability(expected: float) -> float:
    """P(at least one request) for a Poisson count with mean `expected`."""
    return 1.0 - math.exp(-max(expected, 0.0))


def warm_decision(
    signal: ModelSignal, loaded_anywhere: bool, settings: WarmSettings
) -> tuple[bool, Reason]:
    """Whether to keep `signal.model` warm, and why (see the module docstring, rule 2)."""
    p = request_probability(signal.expected)
    if signal.pinned:
        return True, "pinned"
    if p >= settings.load_probability:
        return True, "forecast"
    if loaded_anywhere and p >= settings.keep_probability:
        return True, "hysteresis"
    if signal.recent_use:
        return True, "recent"
    return False, "idle"


def desired_state(
    signals: Sequence[ModelSignal],
    warm: Mapping[str, bool],
    pools: Sequence[PoolView],
    settings: WarmSettings,
) -> dict[tuple[str, str], int]:
    """Replicas per (model, pool) over the readable pools (rule 3)."""
    readable = [p for p in pools if p.loaded is not None]
    budgets = {p.pool.id: p.pool.memory_mb for p in readable if p.pool.memory_mb > 0}
    per_pool = settings.replica_rps * settings.max_replicas
    demands: list[ReplicaDemand] = []
    current: dict[tuple[str, str], int] = {}
    for s in signals:
        is_warm = warm.get(s.model, False)
        rate = max(s.expected / settings.window_s, MIN_RATE) if is_warm else 0.0
        eligible = [p for p in readable if s.model in p.serves]
        eligible.sort(key=lambda p: (s.model not in _held(p), p.pool.cost_per_hour, p.pool.id))
        for i, p in enumerate(eligible):
            demands.append(
                ReplicaDemand(
                    model=s.model,
                    pool=p.pool.id,
                    upper_rps=min(max(rate - i * per_pool, 0.0), per_pool),
                    capacity_rps=settings.replica_rps,
                    memory_mb=s.memory_mb,
                    cost_per_hour=p.pool.cost_per_hour,
                    min_replicas=1 if s.pinned else 0,
                    max_replicas=settings.max_replicas,
                )
            )
            if is_warm and s.model in _held(p):
                current[(s.model, p.pool.id)] = 1
    return desired_replicas(demands, budgets, current, settings.hysteresis)


def _held(view: PoolView) -> Mapping[str, frozenset[str]]:
    return view.loaded or {}


def plan_actions(
    signals: Sequence[ModelSignal],
    desired: Mapping[tuple[str, str], int],
    pools: Sequence[PoolView],
) -> list[WarmAction]:
    """Unloads then loads per pool that bring each pool to `desired` (rule 4)."""
    actions: list[WarmAction] = []
    for view in pools:
        if view.loaded is None:
            continue
        pid = view.pool.id
        unloads: list[WarmAction] = []
        loads: list[WarmAction] = []
        for s in sorted(signals, key=lambda s: s.model):
            have = view.loaded.get(s.model, frozenset())
            if desired.get((s.model, pid), 0) > 0:
                if s.version not in have:
                    loads.append(
                        WarmAction(pool=pid, model=s.model, version=s.version, action="load")
                    )
            else:
                unloads += [
                    WarmAction(pool=pid, model=s.model, version=v, action="unload")
                    for v in sorted(have)
                ]
        actions += unloads + loads
    return actions
