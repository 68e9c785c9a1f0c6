"""The score step: expected latency and cost of each candidate, ranked by the objective.

    base    = EWMA latency of (pool, model), else of the pool, else the prior (the
              fastest pool average among the candidates, capped by `prior_latency_ms`,
              plus `cross_site_ms` for a pool in another site than the router's);
              each stale average blends back towards the next one with age
    queue   = base * (in-flight + queued) / capacity
              in-flight = max(the router's own count, the adapter's fresh report)
    load    = 0 if the model is loaded there (or the pool never said, with
              `assume_loaded`), else model.load_time_ms or the default
    latency = base + queue + load
    cost    = cost_per_hour * (base + load) / 3_600_000 / capacity   (USD per request)
              + cross_site_cost_per_1k / 1000 for a pool in another site (egress)
    errors  = the pool's moving failure rate, faded towards 0 with age

Candidates over the cost budget become exclusions. `rank` orders the rest by the
objective: `fastest` by latency, `cheapest` by cost, `slo-then-cost` by cost among
those predicted to meet the SLO, then everyone else by latency; pools failing more
often than `max_error_rate` come after all others. Pools of the router's own site go
first on ties and within the tolerance band. Pure; no clock reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from mpfn.documents import ModelVersion, Pool
from mpfn.routing.filter import Exclusion
from mpfn.routing.hints import Limits
from mpfn.routing.stats import (
    EMPTY_STATS,
    Feedback,
    decayed,
    error_rate_at,
    is_loaded,
    model_ref,
)
from mpfn.routing.tuning import RoutingConfig


class Score(NamedTuple):
    """One candidate's estimate; times in ms, `cost` in USD per request."""

    pool: Pool
    latency_ms: float
    base_ms: float
    queue_ms: float
    load_ms: float
    cost: float
    meets_slo: bool
    error_rate: float = 0.0


def estimate(
    model: ModelVersion,
    ref: str,
    pool: Pool,
    feedback: Feedback,
    limits: Limits,
    now: float,
    cfg: RoutingConfig,
    prior_ms: float | None = None,
) -> Score:
    """Expected latency and cost of sending one request for `model` to `pool`;
    `prior_ms` (default `cfg.prior_latency_ms`) stands in for what was never observed,
    plus `cfg.cross_site_ms` when the pool is in another site than the router's."""
    pool_id = pool.id
    stats = feedback.stats.get(pool_id, EMPTY_STATS)
    half_life = cfg.stale_half_life_s
    prior = cfg.prior_latency_ms if prior_ms is None else prior_ms
    away = cfg.away(pool)
    if away:  # observed averages include the distance already; the prior does not
        prior += cfg.cross_site_ms
    pool_ms = decayed(stats.latency, prior, now, half_life)
    base = decayed(feedback.latency.get((pool_id, ref)), pool_ms, now, half_life)
    inflight = feedback.inflight.get(pool_id, 0)
    queued = 0
    if now - stats.reported_at <= cfg.report_ttl_s:
        inflight = max(inflight, stats.reported_inflight)
        queued = stats.reported_queued
    capacity = pool.capacity if pool.capacity > 0 else 1
    queue = base * (inflight + queued) / capacity
    loaded = is_loaded(stats, ref, model.name)
    if loaded is None:  # the pool never said what it holds
        loaded = cfg.assume_loaded or model.name in pool.models
    load = (
        0.0
        if loaded
        else (model.load_time_ms if model.load_time_ms is not None else cfg.default_load_ms)
    )
    latency = base + queue + load
    cost = pool.cost_per_hour * (base + load) / 3_600_000.0 / capacity
    if away:
        cost += cfg.cross_site_cost_per_1k / 1000.0
    slo = limits.latency_slo_ms
    errors = error_rate_at(stats, now, half_life) if stats.error_rate else 0.0
    return Score(pool, latency, base, queue, load, cost, slo is None or latency <= slo, errors)


def score_pools(
    model: ModelVersion,
    pools: Sequence[Pool],
    feedback: Feedback,
    limits: Limits,
    now: float,
    cfg: RoutingConfig,
) -> tuple[list[Score], list[Exclusion]]:
    """Estimates for `pools`, minus those over the cost budget (returned as exclusions).

    The prior for what was never observed is the fastest pool average among `pools`
    (capped by `cfg.prior_latency_ms`): an untried pool is expected to be as good as the
    best known one, so it gets tried, and a stale average fades towards it, so a pool
    that was slow once is tried again. Another site's average counts less the
    `cross_site_ms` it includes, so an untried pool at home is not priced at the distance
    to the only pool observed so far.
    """
    ref = model_ref(model)
    scores: list[Score] = []
    excluded: list[Exclusion] = []
    budget = limits.max_cost
    prior = cfg.prior_latency_ms
    stats = feedback.stats
    for pool in pools:
        seen = stats.get(pool.id)
        if seen is None or seen.latency is None:
            continue
        # the prior is distance-free: another site's average less the distance to it
        value = seen.latency.value
        if cfg.away(pool):
            value = max(value - cfg.cross_site_ms, 0.0)
        prior = min(prior, value)
    for pool in pools:
        s = estimate(model, ref, pool, feedback, limits, now, cfg, prior)
        if budget is not None and s.cost > budget + cfg.cost_epsilon:
            excluded.append(Exclusion(pool.id, f"cost ${s.cost:.3g} over budget ${budget:.3g}"))
        else:
            scores.append(s)
    return scores, excluded


def orders_by_cost(scores: Sequence[Score], limits: Limits) -> tuple[bool, bool]:
    """(split, by_cost): whether `rank` puts pools meeting the SLO first
    (`slo-then-cost` with at least one of them), and whether it orders by cost."""
    objective = limits.objective
    split = objective == "slo-then-cost" and any(s.meets_slo for s in scores)
    return split, split or objective == "cheapest"


def rank(scores: Sequence[Score], limits: Limits, cfg: RoutingConfig) -> tuple[list[Score], int]:
    """`scores` best first by the objective of `limits`, and how many of the first are
    within `cfg.tolerance` of the best (they share the traffic). Flaky pools (failure
    rate over `cfg.max_error_rate`) go last. Ties go by latency, then to a pool of the
    router's own site, then by pool id; when the pools within the tolerance include some
    of the router's site, only those share the traffic (the others follow them)."""
    max_err = cfg.max_error_rate
    split, by_cost = orders_by_cost(scores, limits)
    away = cfg.away
    if split:
        ranked = sorted(
            scores,
            key=lambda s: (
                s.error_rate > max_err,
                not s.meets_slo,
                s.cost if s.meets_slo else s.latency_ms,
                s.latency_ms,
                away(s.pool),
                s.pool.id,
            ),
        )
    elif by_cost:
        ranked = sorted(
            scores,
            key=lambda s: (s.error_rate > max_err, s.cost, s.latency_ms, away(s.pool), s.pool.id),
        )
    else:
        ranked = sorted(
            scores, key=lambda s: (s.error_rate > max_err, s.latency_ms, away(s.pool), s.pool.id)
        )
    if not ranked:
        return ranked, 0
    best = ranked[0]
    best_flaky = best.error_rate > max_err
    limit = (best.cost if by_cost else best.latency_ms) * (1.0 + cfg.tolerance)
    limit += cfg.cost_epsilon
    near = 1
    for s in ranked[1:]:
        if (s.error_rate > max_err) != best_flaky:
            break
        if s.meets_slo != best.meets_slo and split:
            break
        if (s.cost if by_cost else s.latency_ms) > limit:
            break
        near += 1
    if near > 1 and cfg.home is not None:
        return home_first(ranked, near, cfg)
    return ranked, near


def home_first(ranked: list[Score], near: int, cfg: RoutingConfig) -> tuple[list[Score], int]:
    """The band of the first `near` with the pools not away from the router's site first,
    and only those sharing the traffic; unchanged when the band is all one or the other."""
    band = ranked[:near]
    home = [s for s in band if not cfg.away(s.pool)]
    if not home or len(home) == near:
        return ranked, near
    return [*home, *(s for s in band if cfg.away(s.pool)), *ranked[near:]], len(home)
