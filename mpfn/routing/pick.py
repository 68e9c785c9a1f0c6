"""The pick step: smooth weighted round-robin over the candidates near the best.

Weights come from expected latency (`best / latency`, floored at `min_weight`), so a
pool twice as slow gets half the share and load spreads instead of herding on the
single best pool. `swrr` is nginx's smooth weighted round-robin made pure: it takes the
current weights and returns the choice plus the next current weights. Deterministic:
ties go to the earlier (better-ranked) candidate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mpfn.routing.score import Score
from mpfn.routing.tuning import RoutingConfig


def weights_for(near: Sequence[Score], cfg: RoutingConfig) -> list[float]:
    """Share weights of the candidates near the best, in (min_weight, 1]."""
    best = min(s.latency_ms for s in near)
    floor = cfg.min_weight
    return [1.0 if s.latency_ms <= 0.0 else max(floor, best / s.latency_ms) for s in near]


def swrr(
    ids: Sequence[str], weights: Sequence[float], current: Mapping[str, float]
) -> tuple[int, dict[str, float]]:
    """One smooth weighted round-robin step over `ids` (non-empty).

    Every candidate's current weight grows by its weight; the largest is chosen and
    lowered by the total. Entries of `current` for ids not offered are dropped.
    """
    total = 0.0
    chosen = 0
    top = float("-inf")
    nxt: dict[str, float] = {}
    for i, pool_id in enumerate(ids):
        w = weights[i]
        total += w
        cw = current.get(pool_id, 0.0) + w
        nxt[pool_id] = cw
        if cw > top:
            chosen, top = i, cw
    nxt[ids[chosen]] = top - total
    return chosen, nxt
