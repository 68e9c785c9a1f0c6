"""The score step: expected latency and cost of each candidate, ranked by the objective.

    base    = EWMA latency of (pool, model), else of the pool, else the prior; each stale
              average blends back towards the next one with age
    queue   = base * (in-flight + queued) / capacity
              in-flight = max(the router's own count, the adapter's fresh report)
    load    = 0 if the model is loaded there, else model.load_time_ms or the default
    latency = base + queue + load
    cost    = cost_per_hour * (base + load) / 3_600_000 / capacity   (USD per request)

Candidates over the cost budget become exclusions. `rank` orders the rest by the
objective: `fastest` by latency, `cheapest` by cost, `slo-then-cost` by cost among
those predicted to meet the SLO, then everyone else by latency. Pure; no clock reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mpfn.documents import ModelVersion, Pool
from mpfn.routing.config import RoutingConfig
from mpfn.routing.filter import Exclusion
from mpfn.routing.hints import Limits
from mpfn.routing.stats import EMPTY_STATS, Feedback, decayed, is_loaded, model_ref


@dataclass(frozen=True, slots=True)
class Score:
    """One candidate's estimate; times in ms, `cost` in USD per request.

    `tier` is 0 for pools ranked by the objective's main metric, 1 for pools that miss
    the SLO when another meets it. `value` is the metric the tier is ranked by.
    """

    pool: Pool
    latency_ms: float
    base_ms: float
    queue_ms: float
    load_ms: float
    cost: float
    meets_slo: bool
    tier: int = 0
    value: float = 0.0


def estimate(
    model: ModelVersion,
    ref: str,
    pool: Pool,
    feedback: Feedback,
    limits: Limits,
    now: float,
    cfg: RoutingConfig,
) -> Score:
    """Expected latency and cost of sending one request for `model` to `pool`."""
    stats = feedback.stats.get(pool.id, EMPTY_STATS)
    half_life = cfg.stale_half_life_s
    pool_ms = decayed(stats.latency, cfg.prior_latency_ms, now, half_life)
    base = decayed(feedback.latency.get((pool.id, ref)), pool_ms, now, half_life)
    inflight = feedback.inflight.get(pool.id, 0)
    queued = 0
    if now - stats.reported_at <= cfg.report_ttl_s:
        inflight = max(inflight, stats.reported_inflight)
        queued = stats.reported_queued
    capacity = pool.capacity if pool.capacity > 0 else 1
    queue = base * (inflight + queued) / capacity
    loaded = is_loaded(stats, ref, model.name)
    if loaded is None:
        loaded = model.name in pool.models
    load = (
        0.0
        if loaded
        else (model.load_time_ms if model.load_time_ms is not None else cfg.default_load_ms)
    )
    latency = base + queue + load
    cost = pool.cost_per_hour * (base + load) / 3_600_000.0 / capacity
    slo = limits.latency_slo_ms
    return Score(pool, latency, base, queue, load, cost, slo is None or latency <= slo)


def score_pools(
    model: ModelVersion,
    pools: Sequence[Pool],
    feedback: Feedback,
    limits: Limits,
    now: float,
    cfg: RoutingConfig,
) -> tuple[list[Score], list[Exclusion]]:
    """Estimates for `pools`, minus those over the cost budget (returned as exclusions)."""
    ref = model_ref(model)
    scores: list[Score] = []
    excluded: list[Exclusion] = []
    budget = limits.max_cost
    for pool in pools:
        s = estimate(model, ref, pool, feedback, limits, now, cfg)
        if budget is not None and s.cost > budget + cfg.cost_epsilon:
            excluded.append(Exclusion(pool.id, f"cost ${s.cost:.3g} over budget ${budget:.3g}"))
        else:
            scores.append(s)
    return scores, excluded


def _with_rank(s: Score, tier: int, value: float) -> Score:
    return Score(
        s.pool, s.latency_ms, s.base_ms, s.queue_ms, s.load_ms, s.cost, s.meets_slo, tier, value
    )


def rank(scores: Sequence[Score], limits: Limits) -> list[Score]:
    """`scores` best first by the objective of `limits`; ties by latency, then pool id."""
    objective = limits.objective
    by_cost = objective == "cheapest" or (
        objective == "slo-then-cost" and any(s.meets_slo for s in scores)
    )
    ranked: list[Score] = []
    for s in scores:
        if objective == "slo-then-cost" and by_cost and not s.meets_slo:
            ranked.append(_with_rank(s, 1, s.latency_ms))
        else:
            ranked.append(_with_rank(s, 0, s.cost if by_cost else s.latency_ms))
    ranked.sort(key=lambda s: (s.tier, s.value, s.latency_ms, s.pool.id))
    return ranked


def near_best(ranked: Sequence[Score], cfg: RoutingConfig) -> int:
    """How many of the first `ranked` are within the tolerance of the best (>= 1)."""
    if not ranked:
        return 0
    best = ranked[0]
    limit = best.value * (1.0 + cfg.tolerance) + cfg.cost_epsilon
    n = 1
    for s in ranked[1:]:
        if s.tier != best.tier or s.value > limit:
            break
        n += 1
    return n
