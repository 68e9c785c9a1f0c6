"""Desired warm replicas per (model, pool): a pure function of forecast, capacity and budget.

Inputs are the forecast's upper bound of requests/s per model, the throughput one replica
sustains, per-model memory and per-pool memory budgets, the cost per replica-hour, min/max
clamps and the currently warm counts. Output is the count per (model, pool). Rules:

1. need = ceil(upper / capacity_per_replica), clamped to [min_replicas, max_replicas];
2. hysteresis: keep the current count if it is within `hysteresis` replicas above the need
   (scale down only when clearly over; scale up immediately), so small forecast wiggles
   don't make models flap;
3. memory budget per pool: if the replicas do not fit, drop replicas with the lowest
   forecast demand per unit cost first, never below `min_replicas`;
4. cost: among models that must shrink, the most expensive per request goes first.

No I/O, no clock: the warmer reads the store, calls this, and applies the difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaDemand:
    model: str
    pool: str
    upper_rps: float  # forecast upper bound, requests per second
    capacity_rps: float  # what one replica sustains
    memory_mb: float
    cost_per_hour: float = 0.0
    min_replicas: int = 0
    max_replicas: int = 8


def raw_need(d: ReplicaDemand) -> int:
    need = math.ceil(max(d.upper_rps, 0.0) / d.capacity_rps) if d.capacity_rps > 0 else 0
    return max(d.min_replicas, min(d.max_replicas, need))


def _value(d: ReplicaDemand, replicas: int) -> float:
    """Forecast demand served per replica per unit of cost: low values are dropped first."""
    return d.upper_rps / max(replicas, 1) / max(d.cost_per_hour, 1e-9)


def desired_replicas(
    demands: list[ReplicaDemand],
    pool_memory_mb: Mapping[str, float],
    current: Mapping[tuple[str, str], int] | None = None,
    hysteresis: int = 1,
) -> dict[tuple[str, str], int]:
    """Replicas to keep warm per (model, pool); see the module docstring for the rules."""
    current = current or {}
    out: dict[tuple[str, str], int] = {}
    for d in demands:
        key = (d.model, d.pool)
        need = raw_need(d)
        have = current.get(key, 0)
        if need < have <= need + hysteresis:
            need = min(have, d.max_replicas)
        out[key] = need
    for pool, budget in pool_memory_mb.items():
        in_pool = [d for d in demands if d.pool == pool]
        used = sum(out[(d.model, d.pool)] * d.memory_mb for d in in_pool)
        # cheapest-to-drop first: least forecast demand per replica, then most expensive
        order = sorted(in_pool, key=lambda d: (_value(d, out[(d.model, d.pool)]), d.model))
        while used > budget + 1e-9:
            for d in order:
                key = (d.model, d.pool)
                if out[key] > d.min_replicas:
                    out[key] -= 1
                    used -= d.memory_mb
                    break
            else:
                break  # only minimum replicas left; the clamp wins over the budget
    return out
