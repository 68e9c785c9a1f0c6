"""What serving cost over a period (`mpfn cost report`): replica-time priced per pool,
set against the requests and tokens the routers counted.

A pool's replica-time comes from its size history (`scaling/<pool>.json`): before its
first recorded size a pool is taken to have run at that size; a pool with no history runs
one replica for the whole period. Its idle time is the replica-time of the minutes in
which it answered no request. Grouped by model, a pool's cost (and its idle cost) is
split across models by their share of that pool's requests. `compute` is pure;
`read_inputs` reads what it needs from a store.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.routing.compat import speaks
from mpfn.scaling.size import read_size, replica_seconds
from mpfn.store import KeyNotFound, Store
from mpfn.usage import MINUTE, USAGE_PREFIX, PoolUsage, latest_usage, read_usage

GroupBy = Literal["model", "pool", "site"]
GROUPINGS: tuple[GroupBy, ...] = ("pool", "model", "site")
HOUR = 3600.0
MILLION = 1_000_000
UNUSED = "(no requests)"  # the model group of pools that answered no request
NO_SITE = "(no site)"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_duration(text: str) -> float:
    """`90m`, `24h`, `7d`, `2w` -> seconds; ValueError for anything else."""
    found = _DURATION.match(text)
    seconds = float(found.group(1)) * _UNITS[found.group(2)] if found else 0.0
    if not found or seconds <= 0 or not math.isfinite(seconds):
        raise ValueError(f"not a duration: {text!r} (a number and s, m, h, d or w: 24h, 7d)")
    return seconds


@dataclass
class Served:
    """Answers and tokens, summed."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: PoolUsage | Served) -> None:
        self.requests += usage.requests
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens


@dataclass
class UsageTotals:
    """The usage of a period: requests counted per model (`count`), answers per (model,
    pool), and the minutes in which each pool answered at least one request."""

    counted: dict[str, int] = field(default_factory=dict)
    served: dict[tuple[str, str], Served] = field(default_factory=dict)
    busy: dict[str, set[int]] = field(default_factory=dict)  # pool -> minutes

    def add(self, model: str, minute: int, count: int, pools: Mapping[str, PoolUsage]) -> None:
        """One usage document's counts (one router process, one minute)."""
        self.counted[model] = self.counted.get(model, 0) + count
        for pool, usage in pools.items():
            self.served.setdefault((model, pool), Served()).add(usage)
            if usage.requests:
                self.busy.setdefault(pool, set()).add(minute)


@dataclass(frozen=True)
class PoolCost:
    """One pool over the period."""

    pool: str
    site: str
    llm: bool
    cost_per_hour: float
    replica_s: float
    idle_s: float
    assumed: str  # how its size was taken when not from its history ("" when it was)

    @property
    def cost(self) -> float:
        return self.replica_s / HOUR * self.cost_per_hour

    @property
    def idle_cost(self) -> float:
        return self.idle_s / HOUR * self.cost_per_hour


@dataclass
class Group:
    """One row of the report."""

    name: str
    cost: float = 0.0
    idle_cost: float = 0.0
    llm_cost: float = 0.0  # the part spent on LLM pools, what token costs divide
    replica_s: float = 0.0
    idle_s: float = 0.0
    served: Served = field(default_factory=Served)

    def add(self, pool: PoolCost, share: float, served: Served) -> None:
        self.cost += pool.cost * share
        self.idle_cost += pool.idle_cost * share
        self.llm_cost += pool.cost * share if pool.llm else 0.0
        self.replica_s += pool.replica_s * share
        self.idle_s += pool.idle_s * share
        self.served.add(served)

    def to_json(self) -> dict[str, Any]:
        s = self.served
        tokens = s.prompt_tokens + s.completion_tokens
        return {
            "name": self.name,
            "cost": round(self.cost, 6),
            "requests": s.requests,
            "cost_per_1m_requests": _per_million(self.cost, s.requests),
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "tokens": tokens,
            "cost_per_1m_tokens": _per_million(self.llm_cost, tokens),
            "idle_cost": round(self.idle_cost, 6),
            "replica_hours": round(self.replica_s / HOUR, 6),
            "idle_replica_hours": round(self.idle_s / HOUR, 6),
        }


def _per_million(cost: float, n: int) -> float | None:
    return round(cost / n * MILLION, 6) if n else None


@dataclass
class CostReport:
    start: float
    end: float
    by: GroupBy
    groups: list[Group]
    total: Group
    unattributed_requests: int  # counted for a model, answered by no recorded pool
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "by": self.by,
            "groups": [g.to_json() for g in self.groups],
            "total": self.total.to_json(),
            "unattributed_requests": self.unattributed_requests,
            "notes": list(self.notes),
        }


def iso(epoch_s: float) -> str:
    """`2026-12-01T08:00:00Z`."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pool_cost(
    pool: Pool,
    history: Sequence[tuple[float, int]],
    busy: Iterable[int],
    start: float,
    end: float,
) -> PoolCost:
    """`pool`'s replica-time and idle replica-time in [start, end)."""
    steps = sorted(history)
    assumed = ""
    if not steps:
        steps = [(start, 1)]
        assumed = "no size history: 1 replica assumed for the whole period"
    elif steps[0][0] > start:
        first = steps[0][1]
        assumed = f"its size before {iso(steps[0][0])} taken as {first} (first recorded)"
        steps = [(start, first), *steps]
    total = replica_seconds(steps, start, end)
    working = 0.0
    for minute in busy:
        lo, hi = max(start, minute * MINUTE), min(end, (minute + 1) * MINUTE)
        if hi > lo:
            working += replica_seconds(steps, lo, hi)
    return PoolCost(
        pool=pool.id,
        site=pool.site or NO_SITE,
        llm=speaks(pool.adapter, "openai"),
        cost_per_hour=pool.cost_per_hour,
        replica_s=total,
        idle_s=max(0.0, total - working),
        assumed=assumed,
    )


def compute(
    pools: Sequence[Pool],
    histories: Mapping[str, Sequence[tuple[float, int]]],
    usage: UsageTotals,
    start: float,
    end: float,
    by: GroupBy = "pool",
) -> CostReport:
    """The report of [start, end) grouped `by` pool, model or site (pure)."""
    if by not in GROUPINGS:
        raise ValueError(f"cannot group by {by!r}: one of {', '.join(GROUPINGS)}")
    costs = {
        p.id: pool_cost(p, histories.get(p.id, ()), usage.busy.get(p.id, ()), start, end)
        for p in pools
    }
    per_pool: dict[str, Served] = defaultdict(Served)
    models_of: dict[str, list[tuple[str, Served]]] = defaultdict(list)
    for (model, pool), served in sorted(usage.served.items()):
        per_pool[pool].add(served)
        models_of[pool].append((model, served))
    groups: dict[str, Group] = {}

    def group(name: str) -> Group:
        return groups.setdefault(name, Group(name))

    for pid, pc in costs.items():
        if by != "model":
            group(pid if by == "pool" else pc.site).add(pc, 1.0, per_pool[pid])
            continue
        answered = per_pool[pid].requests
        if not answered:
            group(UNUSED).add(pc, 1.0, per_pool[pid])
        for model, served in models_of[pid] if answered else ():
            group(model).add(pc, served.requests / answered, served)
    notes = [
        "cost = replica-time x cost_per_hour; idle = replica-time of minutes in which "
        "the pool answered no request"
    ]
    if by == "model":
        notes.append(
            "each pool's cost is split across models by their share of its requests; "
            f"pools that answered none are under {UNUSED!r}"
        )
    unknown = sorted(set(per_pool) - set(costs))
    for pid in unknown:
        nobody = PoolCost(pid, NO_SITE, False, 0.0, 0.0, 0.0, "")
        if by != "model":
            group(pid if by == "pool" else NO_SITE).add(nobody, 0.0, per_pool[pid])
        for model, served in models_of[pid] if by == "model" else ():
            group(model).add(nobody, 0.0, served)
    if unknown:
        notes.append(f"not registered now, so not priced: pool(s) {', '.join(unknown)}")
    fixed = sorted(pid for pid in costs if pid not in histories or not histories[pid])
    if fixed:
        notes.append(f"no size history, 1 replica assumed for the whole period: {', '.join(fixed)}")
    notes.extend(
        f"{pid}: {pc.assumed}"
        for pid, pc in sorted(costs.items())
        if pc.assumed and pid not in fixed
    )
    total = Group("total")
    for g in groups.values():
        total.cost += g.cost
        total.idle_cost += g.idle_cost
        total.llm_cost += g.llm_cost
        total.replica_s += g.replica_s
        total.idle_s += g.idle_s
        total.served.add(g.served)
    counted = sum(usage.counted.values())
    unattributed = max(0, counted - total.served.requests)
    if unattributed:
        notes.append(
            f"{unattributed} request(s) counted without a pool that answered them "
            "(refused, failed, or counted by routers that do not record pools)"
        )
    ordered = sorted(groups.values(), key=lambda g: (-g.cost, g.name))
    return CostReport(start, end, by, ordered, total, unattributed, notes)


# -- reading -------------------------------------------------------------------------------


def model_names(store: Store, pools: Sequence[Pool]) -> list[str]:
    """Every model usage may be counted for: registered models and pools' model lists."""
    names = {m.name for m in Registry(store).models()}
    for pool in pools:
        names.update(pool.models)
    return sorted(names)


def read_usage_totals(store: Store, models: Iterable[str], start: float, end: float) -> UsageTotals:
    """The usage of `models` in the minutes that overlap [start, end), from the minute
    documents (the highest sequence per minute and router process)."""
    totals = UsageTotals()
    first, last = int(start // MINUTE), math.ceil(end / MINUTE) - 1
    days = []
    day = datetime.fromtimestamp(first * MINUTE, tz=UTC).date()
    while day <= datetime.fromtimestamp(last * MINUTE, tz=UTC).date():
        days.append(day)
        day += timedelta(days=1)
    for model in models:
        for d in days:
            listed = store.list(f"{USAGE_PREFIX}{model}/{d:%Y/%m/%d}/")
            for key, name in latest_usage(listed).items():
                if not first <= name.minute <= last:
                    continue
                try:
                    blob = store.get(key)
                except KeyNotFound:
                    continue
                if blob is None:
                    continue
                minute = read_usage(key, blob.body)
                totals.add(model, name.minute, minute.count, minute.pools)
    return totals


def read_histories(store: Store, pools: Iterable[Pool]) -> dict[str, list[tuple[float, int]]]:
    """Each pool's size history (pools without one are left out)."""
    out: dict[str, list[tuple[float, int]]] = {}
    for pool in pools:
        size = read_size(store, pool.id)
        if size is not None and size.history:
            out[pool.id] = [(float(t), int(n)) for t, n in size.history]
    return out


def report(store: Store, since_s: float, now: float, by: GroupBy = "pool") -> CostReport:
    """The report of the last `since_s` seconds before `now`, read from `store`."""
    pools = Registry(store).pools()
    start = now - since_s
    usage = read_usage_totals(store, model_names(store, pools), start, now)
    return compute(pools, read_histories(store, pools), usage, start, now, by)
