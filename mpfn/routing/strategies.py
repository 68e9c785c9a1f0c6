"""Baseline pick strategies to measure the scheduler against: round-robin, random and
least-loaded.

mpfn's own scheduler is `route` (filter -> score -> smooth weighted round-robin over the
near-best, with breakers and fallback models). A baseline keeps the hard constraints of
the filter (model, format, hardware, policy clouds/regions, pins, capacity, cost budget)
but ignores circuit breakers, scores and fallback models, and orders the remaining pools
by its own rule; the router still fails over along that order. The router selects one
with its `strategy` setting (for benchmarks). Pure: the turn counter and the random
generator are passed in.
"""

from __future__ import annotations

import random
from typing import Literal, get_args

from mpfn.routing.breaker import DEFAULT_BREAKER
from mpfn.routing.compat import DEFAULT_FORMATS, FormatTable
from mpfn.routing.filter import filter_pools
from mpfn.routing.hints import NO_HINTS, RequestHints, tighten
from mpfn.routing.route import Attempt, Decision, Target, check_pin
from mpfn.routing.score import Score, score_pools
from mpfn.routing.stats import Feedback
from mpfn.routing.tuning import DEFAULT_CONFIG, RoutingConfig

Strategy = Literal["mpfn", "round-robin", "random", "least-loaded"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


def order(
    strategy: Strategy,
    scores: list[Score],
    feedback: Feedback,
    rng: random.Random,
    turn: int,
) -> list[Score]:
    """`scores` in the order a baseline tries them (input order does not matter)."""
    ordered = sorted(scores, key=lambda s: s.pool.id)
    n = len(ordered)
    if n <= 1:
        return ordered
    if strategy == "random":
        rng.shuffle(ordered)
        return ordered
    start = turn % n
    rotated = ordered[start:] + ordered[:start]
    if strategy == "least-loaded":
        inflight = feedback.inflight
        # stable sort: equally loaded pools keep their round-robin order
        return sorted(rotated, key=lambda s: inflight.get(s.pool.id, 0))
    return rotated


def route_baseline(
    strategy: Strategy,
    target: Target,
    feedback: Feedback,
    *,
    now: float,
    rng: random.Random,
    turn: int,
    hints: RequestHints = NO_HINTS,
    cfg: RoutingConfig = DEFAULT_CONFIG,
    table: FormatTable = DEFAULT_FORMATS,
) -> Decision:
    """A decision for `target` by a baseline strategy (not `mpfn`).

    Raises HintError like `route` for a region or pin the policy forbids.
    """
    if strategy == "mpfn":
        raise ValueError("route_baseline serves the baselines; use route for mpfn")
    limits = tighten(target.policy, hints)
    check_pin(target, limits)
    kept, excluded = filter_pools(
        target.model, target.pools, limits, {}, now, DEFAULT_BREAKER, table
    )
    scores, over_budget = score_pools(target.model, kept, feedback, limits, now, cfg)
    excluded.extend(over_budget)
    if not scores:
        return Decision(
            (), limits, target.model.name, (), tuple(excluded), strategy=strategy, site=cfg.home
        )
    ordered = order(strategy, scores, feedback, rng, turn)
    plan = tuple(Attempt(s.pool, target.model, s.latency_ms) for s in ordered)
    return Decision(
        plan[: cfg.max_attempts],
        limits,
        target.model.name,
        tuple(ordered),
        tuple(excluded),
        near=1,
        weights=(1.0,),
        strategy=strategy,
        site=cfg.home,
    )
