"""Sites in route reasons: why a request left the router's site, in one short clause.

Where a pool is (`RoutingConfig.away`) and what leaving costs (`cross_site_ms`,
`cross_site_cost_per_1k`) are scored in `score`; this module only puts a decision that
went to another site into words for `x-mpfn-route-reason`, e.g.
`left site a for b: no pool in site a can serve (a-1: circuit open)` or
`left site a for b: b-1 ranked first (12.0 ms vs 45.0 ms at a-1)`. Pure; ASCII only,
and short: at most `LISTED` excluded pools are named.
"""

from __future__ import annotations

from collections.abc import Sequence

from mpfn.documents import Pool
from mpfn.routing.filter import Exclusion
from mpfn.routing.hints import Limits
from mpfn.routing.score import Score, orders_by_cost
from mpfn.routing.tuning import RoutingConfig

LISTED = 3


def left_site(
    chosen: Score,
    ranked: Sequence[Score],
    pools: Sequence[Pool],
    exclusions: Sequence[Exclusion],
    model: str,
    limits: Limits,
    cfg: RoutingConfig,
) -> str:
    """Why `chosen` (a pool in another site than the router's) beat every pool of the
    router's site: the best of them ranked lower, or none of `pools` there could serve
    (`exclusions` say why). Empty when `chosen` is not away or the router has no site."""
    home = cfg.home
    if home is None or not cfg.away(chosen.pool):
        return ""
    head = f"left site {home} for {chosen.pool.site}: "
    mine = [s for s in ranked if s.pool.site == home]
    if mine:
        return (
            head
            + f"{chosen.pool.id} ranked first ({_versus(chosen, mine[0], ranked, limits, cfg)})"
        )
    here = {p.id for p in pools if p.site == home}
    excluded = [e for e in exclusions if e.pool in here]
    if not excluded:
        return head + f"no pool in site {home} serves model {model}"
    named = "; ".join(f"{e.pool}: {e.reason}" for e in excluded[:LISTED])
    more = f"; {len(excluded) - LISTED} more" if len(excluded) > LISTED else ""
    return head + f"no pool in site {home} can serve ({named}{more})"


def _versus(
    chosen: Score, other: Score, ranked: Sequence[Score], limits: Limits, cfg: RoutingConfig
) -> str:
    """What put `chosen` ahead of `other`, the best pool of the router's site."""
    at = f" at {other.pool.id}"
    max_err = cfg.max_error_rate
    if other.error_rate > max_err >= chosen.error_rate:
        return f"{other.pool.id} failing {other.error_rate:.0%}"
    split, by_cost = orders_by_cost(ranked, limits)
    ms = f"{chosen.latency_ms:.1f} ms vs {other.latency_ms:.1f} ms{at}"
    if split and chosen.meets_slo and not other.meets_slo:
        return f"{ms} misses-slo"
    if by_cost and (chosen.meets_slo or not split):
        return f"${chosen.cost * 1000.0:.3g}/1k vs ${other.cost * 1000.0:.3g}/1k{at}"
    return ms


def left_for(home: str | None, first: Pool, pool: Pool) -> str:
    """The clause of a failover attempt on `pool` that leaves the router's site `home`
    (`left site a for b`); empty when it stays, or when the plan's first pool, which the
    route reason already explains, was in that same site."""
    site = pool.site
    if home is None or site is None or site == home or site == first.site:
        return ""
    return f"left site {home} for {site}"
