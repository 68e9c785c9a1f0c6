"""Per-request routing hints: parse the `x-mpfn-*` request headers, tighten the policy.

`parse_hints` turns headers into a `RequestHints` value, raising `HintError` (a
ValueError whose message is fit for a 400 response) on malformed values. `tighten`
combines a policy with hints into the `Limits` one decision obeys; hints can only narrow
what the policy allows, never widen it. No I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from mpfn.documents import NAME_PATTERN, Policy

LATENCY_BUDGET = "x-mpfn-latency-budget-ms"
MAX_COST = "x-mpfn-max-cost"
REGION = "x-mpfn-region"
PIN = "x-mpfn-pool"

Objective = Literal["slo-then-cost", "fastest", "cheapest"]

_NAME_RE = re.compile(NAME_PATTERN)
_REGION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class HintError(ValueError):
    """A routing hint is malformed or asks for more than the policy allows (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class RequestHints:
    """What one request asked for; None/empty means "no preference"."""

    latency_budget_ms: float | None = None
    max_cost: float | None = None  # USD for this one request
    regions: tuple[str, ...] = ()
    pool: str | None = None


NO_HINTS = RequestHints()


class Limits(NamedTuple):
    """The effective constraints of one decision: a policy narrowed by request hints.

    `clouds`/`regions` empty means any; `max_cost` is USD per request.
    """

    policy: str = "default"
    objective: Objective = "slo-then-cost"
    latency_slo_ms: float | None = None
    max_cost: float | None = None
    clouds: Collection[str] = ()
    regions: Collection[str] = ()
    pool: str | None = None
    timeout_ms: float = 30_000.0


def _number(name: str, raw: str, *, positive: bool) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "a positive number" if positive else "a non-negative number"
        raise HintError(f"{name} must be {kind}, got {raw!r}")
    return value


def _regions(raw: str) -> tuple[str, ...]:
    regions = tuple(r.strip() for r in raw.split(",") if r.strip())
    if not regions:
        raise HintError(f"{REGION} must name at least one region, got {raw!r}")
    for region in regions:
        if not _REGION_RE.match(region):
            raise HintError(f"{REGION}: invalid region name {region!r}")
    return regions


def parse_hints(headers: Mapping[str, str]) -> RequestHints:
    """Read the routing hints from lower-cased request headers.

    `x-mpfn-latency-budget-ms`: milliseconds (> 0); `x-mpfn-max-cost`: USD this request
    may cost (>= 0); `x-mpfn-region`: one region or a comma-separated list;
    `x-mpfn-pool`: the id of the one pool to use.
    """
    budget = headers.get(LATENCY_BUDGET)
    cost = headers.get(MAX_COST)
    region = headers.get(REGION)
    pool = headers.get(PIN)
    if budget is None and cost is None and region is None and pool is None:
        return NO_HINTS
    if pool is not None:
        pool = pool.strip()
        if not _NAME_RE.match(pool):
            raise HintError(f"{PIN}: invalid pool id {pool!r}")
    return RequestHints(
        latency_budget_ms=None
        if budget is None
        else _number(LATENCY_BUDGET, budget, positive=True),
        max_cost=None if cost is None else _number(MAX_COST, cost, positive=False),
        regions=() if region is None else _regions(region),
        pool=pool,
    )


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def tighten(policy: Policy, hints: RequestHints = NO_HINTS) -> Limits:
    """The limits for one request: `policy` narrowed by `hints`.

    Raises HintError when a hinted region is outside the policy's allowed regions.
    """
    policy_cost = None if policy.max_cost_per_1k is None else policy.max_cost_per_1k / 1000.0
    regions: Collection[str] = policy.allowed_regions
    if hints.regions:
        allowed = policy.allowed_regions
        outside = [r for r in hints.regions if allowed and r not in allowed]
        if outside:
            raise HintError(
                f"{REGION}: region {outside[0]!r} is not allowed by policy {policy.name!r} "
                f"(allowed: {', '.join(allowed)})"
            )
        regions = hints.regions
    return Limits(
        policy=policy.name,
        objective=policy.objective,
        latency_slo_ms=_min(policy.latency_slo_ms, hints.latency_budget_ms),
        max_cost=_min(policy_cost, hints.max_cost),
        clouds=policy.allowed_clouds,
        regions=regions,
        pool=hints.pool,
        timeout_ms=policy.timeout_ms,
    )
