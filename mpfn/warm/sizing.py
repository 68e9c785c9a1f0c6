"""The warmer's pool sizes: read each scalable pool's size, size it to the warm plan.

A pool with `scaling` is asked its size first. A pool at zero replicas is asleep: the
warmer does not call it, plans as if it held nothing, and keeps its loads for the run
after it has started. Once the plan is made, each pool's need is the most replicas any
model wants there; `mpfn.scaling.decide_size` turns it into a size (bounds, scale up at
once, down only after `scale_down_after_s`, no change within `scale_cooldown_s`), the
scaler sets it, and `scaling/<pool>.json` records it with its reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from mpfn.documents import Pool
from mpfn.scaling import (
    ScaleError,
    ScalerClients,
    ScaleSettings,
    decide_size,
    read_size,
    record_size,
    scaler_for,
)
from mpfn.store import Store, StoreError
from mpfn.warm.plan import SizeAction, WarmSettings


async def read_sizes(pools: Sequence[Pool], clients: ScalerClients) -> dict[str, int | str]:
    """Each scalable pool's size, or why it could not be read."""

    async def one(pool: Pool) -> int | str:
        try:
            return await scaler_for(pool, clients).get()
        except ScaleError as exc:
            return str(exc)

    scalable = [p for p in pools if p.scaling is not None]
    found = await asyncio.gather(*(one(p) for p in scalable))
    return {p.id: size for p, size in zip(scalable, found, strict=True)}


def pool_needs(desired: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """Replicas per pool: the most any model wants there (each replica holds them all)."""
    needs: dict[str, int] = {}
    for (_model, pool), replicas in desired.items():
        needs[pool] = max(needs.get(pool, 0), replicas)
    return needs


async def apply_sizes(
    store: Store,
    pools: Sequence[Pool],
    sizes: Mapping[str, int | str],
    needs: Mapping[str, int],
    *,
    now: float,
    apply: bool,
    clients: ScalerClients,
    settings: WarmSettings,
) -> list[SizeAction]:
    rules = ScaleSettings(settings.scale_down_after_s, settings.scale_cooldown_s)
    out: list[SizeAction] = []
    for pool in pools:
        if pool.scaling is None or pool.id not in sizes:
            continue
        need = needs.get(pool.id, 0)
        current = sizes[pool.id]
        if isinstance(current, str):
            out.append(SizeAction(pool=pool.id, need=need, status="failed", error=current))
            continue
        try:
            past = read_size(store, pool.id)
        except StoreError:
            past = None
        if past is not None and past.hold_until is not None and now < past.hold_until:
            held = f"held by hand for {past.hold_until - now:.0f} s more"
            out.append(SizeAction(pool=pool.id, current=current, replicas=current, need=need,
                                  reason=held))  # fmt: skip
            continue
        decision = decide_size(
            need,
            current,
            min_replicas=pool.scaling.min_replicas,
            max_replicas=pool.scaling.max_replicas,
            now=now,
            changed_at=past.changed_at if past else None,
            below_since=past.below_since if past else None,
            settings=rules,
        )
        action = SizeAction(
            pool=pool.id,
            current=current,
            replicas=decision.replicas,
            need=need,
            reason=decision.reason,
            status="planned" if decision.changes(current) else "kept",
        )
        if apply:
            action = await _apply(store, pool, action, decision.below_since, now, clients)
        out.append(action)
    return out


async def _apply(
    store: Store,
    pool: Pool,
    action: SizeAction,
    below_since: float | None,
    now: float,
    clients: ScalerClients,
) -> SizeAction:
    assert action.replicas is not None and action.current is not None
    size = action.current
    if action.status == "planned":
        try:
            await scaler_for(pool, clients).set(action.replicas)
        except ScaleError as exc:
            return action.model_copy(update={"status": "failed", "error": str(exc)})
        size = action.replicas
        action = action.model_copy(update={"status": "done"})
    try:
        record_size(
            store, pool.id, size, now=now, reason=action.reason, by="warmer",
            below_since=below_since, previous=action.current,
        )  # fmt: skip
    except StoreError as exc:
        return action.model_copy(update={"error": f"recording the size: {exc}"})
    return action
