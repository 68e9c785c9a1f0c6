"""The filter step: which pools may serve a model version under some limits, and why not.

A pool is kept when its adapter can serve the model's format, it can answer the router
(a backend that does not speak v2 needs an adapter server in front), it has hardware the
model runs on, it serves the model at all (a pool naming its models serves only those), the
limits allow its cloud and region (and pin it, if a pin was asked for), it has capacity
and its circuit breaker admits a request. Every other pool gets an `Exclusion` with a
short reason. The cost budget depends on the estimate, so `score` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from mpfn.documents import ModelVersion, Pool
from mpfn.routing.breaker import Breaker, BreakerConfig, admits
from mpfn.routing.compat import (
    DEFAULT_FORMATS,
    FormatTable,
    adapter_serves,
    missing_adapter_server,
)
from mpfn.routing.hints import Limits


class Exclusion(NamedTuple):
    """A pool that was not a candidate, and the reason."""

    pool: str
    reason: str


def policy_reason(limits: Limits, pool: Pool) -> str | None:
    """Why `limits` forbid `pool`'s cloud or region; None when they allow it."""
    if limits.clouds and pool.cloud not in limits.clouds:
        return f"cloud {pool.cloud} not allowed by policy {limits.policy}"
    if limits.regions and pool.region not in limits.regions:
        return f"region {pool.region} not allowed"
    return None


def _shares_hardware(wanted: Sequence[str], offered: Sequence[str]) -> bool:
    if len(wanted) == 1:
        return wanted[0] in offered  # the common case, without a generator
    return any(h in offered for h in wanted)


def exclusion_reason(
    model: ModelVersion,
    pool: Pool,
    limits: Limits,
    breaker: Breaker | None,
    now: float,
    breaker_cfg: BreakerConfig,
    table: FormatTable = DEFAULT_FORMATS,
) -> str | None:
    """Why `pool` cannot serve `model` now; None when it is a candidate."""
    if limits.pool is not None and pool.id != limits.pool:
        return f"not the pinned pool {limits.pool}"
    listed = model.name in pool.models
    if pool.models and not listed:
        return f"does not serve model {model.name}"
    if not adapter_serves(pool.adapter, model.format, listed=listed, table=table):
        return f"adapter {pool.adapter} cannot serve format {model.format}"
    reason = missing_adapter_server(pool.adapter, pool.adapter_server)
    if reason is not None:
        return reason
    if not _shares_hardware(model.hardware, pool.hardware):
        return f"hardware {'/'.join(pool.hardware)} not in {'/'.join(model.hardware)}"
    reason = policy_reason(limits, pool)
    if reason is not None:
        return reason
    if pool.capacity <= 0:
        return "no capacity"
    if breaker is not None and not admits(breaker, now, breaker_cfg):
        return "circuit open"
    return None


def filter_pools(
    model: ModelVersion,
    pools: Sequence[Pool],
    limits: Limits,
    breakers: Mapping[str, Breaker],
    now: float,
    breaker_cfg: BreakerConfig,
    table: FormatTable = DEFAULT_FORMATS,
) -> tuple[list[Pool], list[Exclusion]]:
    """Split `pools` into candidates and exclusions, keeping the input order."""
    kept: list[Pool] = []
    excluded: list[Exclusion] = []
    for pool in pools:
        reason = exclusion_reason(
            model, pool, limits, breakers.get(pool.id), now, breaker_cfg, table
        )
        if reason is None:
            kept.append(pool)
        else:
            excluded.append(Exclusion(pool.id, reason))
    return kept, excluded
