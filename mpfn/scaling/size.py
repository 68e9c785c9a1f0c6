"""A pool's size history: `scaling/<pool>.json`, replicated like the rest of the registry.

Each change appends `(time, replicas)`; the step function it describes gives the pool's
replica-time over any period (`replica_seconds`), which `mpfn cost report` prices. The
history keeps `KEEP_DAYS` days. Written with the usual conditional update, so a warmer, a
CLI and a router waking the pool never lose each other's changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from mpfn.state import Documents
from mpfn.store import Store

SCALING_PREFIX = "scaling/"
KEEP_DAYS = 35


class PoolSize(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: str
    replicas: int = Field(ge=0, description="The size last set")
    changed_at: float = Field(description="When it was set (epoch seconds)")
    reason: str = ""
    by: str = Field(default="", description="warmer, cli, router:<site>, ...")
    below_since: float | None = Field(
        default=None, description="Since when the need has been below the size (warmer)"
    )
    history: list[tuple[float, int]] = Field(
        default_factory=list, description="(epoch seconds, replicas) at every change"
    )
    hold_until: float | None = Field(
        default=None, description="A size set by hand: the warmer leaves it until then"
    )


def size_key(pool_id: str) -> str:
    return f"{SCALING_PREFIX}{pool_id}.json"


def read_size(store: Store, pool_id: str) -> PoolSize | None:
    return Documents(store).find(size_key(pool_id), PoolSize)


def record_size(
    store: Store,
    pool_id: str,
    replicas: int,
    *,
    now: float,
    reason: str,
    by: str,
    below_since: float | None = None,
    hold_until: float | bool | None = False,
    previous: int | None = None,
) -> PoolSize:
    """Note the pool's size (a change appends to the history; the same size only updates
    the bookkeeping). `hold_until`: a time to keep the size until, None to end a hold,
    False (default) to keep the hold as it is. `previous`: the size read from the
    platform just before, when it may differ from the last recorded one (a router woke
    the pool meanwhile): a change from it is a change."""

    def mutate(old: PoolSize | None) -> PoolSize:
        history = list(old.history) if old else []
        was = previous if previous is not None else (old.replicas if old else None)
        changed = old is None or was != replicas or old.replicas != replicas
        if changed:
            if old is not None and was is not None and old.replicas != was:
                history.append((now, was))  # what it was meanwhile (e.g. woken by a router)
            history.append((now, replicas))
        horizon = now - KEEP_DAYS * 86400
        while len(history) > 1 and history[1][0] <= horizon:
            history.pop(0)
        return PoolSize(
            pool=pool_id,
            replicas=replicas,
            changed_at=now if changed or old is None else old.changed_at,
            reason=reason if changed or old is None else old.reason,
            by=by if changed or old is None else old.by,
            below_since=below_since,
            history=history,
            hold_until=(old.hold_until if old else None) if hold_until is False else hold_until,
        )

    docs = Documents(store)
    docs.update(size_key(pool_id), PoolSize, mutate, create=True)
    found = docs.find(size_key(pool_id), PoolSize)
    assert found is not None
    return found


def replica_seconds(history: Sequence[tuple[float, int]], start: float, end: float) -> float:
    """Replica-time in [start, end] of the step function `history` (sorted by time)."""
    total = 0.0
    for i, (t, replicas) in enumerate(history):
        until = history[i + 1][0] if i + 1 < len(history) else end
        lo, hi = max(t, start), min(until, end)
        if hi > lo:
            total += replicas * (hi - lo)
    return total
