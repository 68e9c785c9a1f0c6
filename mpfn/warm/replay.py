"""`mpfn warm replay`, the pure parts: trace -> schedule, request bodies, warm settings of a
policy, and the report (the shape of `mpfn warm simulate`'s, plus what a live stack shows).

A replay sends a trace's arrivals, time-compressed by a speedup, to a running router; the
HTTP driver is `mpfn.warm.replay_run`. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mpfn.documents import ModelVersion, Pool, TensorSpec
from mpfn.scaling.size import PoolSize, replica_seconds
from mpfn.simulator.engine import SimulationResult
from mpfn.simulator.traces import Request
from mpfn.warm.plan import WarmSettings

#: Response headers a replay reads.
LOAD_MS = "x-mpfn-load-ms"
WAKE_MS = "x-mpfn-wake-ms"
ROUTE_REASON = "x-mpfn-route-reason"
RETRY_AFTER = "retry-after"

#: Warm settings that are durations; a policy's are divided by the speedup, so that they
#: mean in compressed time what they mean in trace time.
TIME_SETTINGS = ("keep_alive_s", "window_s", "recent_s", "scale_down_after_s", "scale_cooldown_s")

REPLAY_POLICY_HELP = (
    "current (leave config/warmer.json as it is) | none | keepalive:SECONDS | forecast"
    "[:budget=HOURS] | warmer:KEY=VALUE,... (WarmSettings fields)"
)


@dataclass(frozen=True)
class Arrival:
    """One request to send: `at` seconds after the replay starts (wall clock)."""

    at: float
    trace_time: float
    trace_model: str
    model: str


def map_models(trace_models: Sequence[str], registered: Sequence[str]) -> dict[str, str]:
    """Trace models -> registered models: a name registered on the stack maps to itself
    (as `warm simulate` keys models by their trace name); the others, in the given order
    (busiest first), go round-robin over `registered`."""
    if not registered:
        raise ValueError("no registered models to replay onto")
    known = set(registered)
    out: dict[str, str] = {}
    i = 0
    for name in trace_models:
        if name in out:
            continue
        if name in known:
            out[name] = name
        else:
            out[name] = registered[i % len(registered)]
            i += 1
    return out


def busiest_first(trace: Iterable[Request]) -> list[str]:
    """Trace models by request count, ties by first appearance."""
    counts = Counter(r.model for r in trace)
    return [m for m, _ in counts.most_common()]


def schedule(
    trace: Sequence[Request],
    speedup: float,
    registered: Sequence[str],
    *,
    start_at: float = 0.0,
    max_requests: int = 2000,
    max_seconds: float = 120.0,
) -> tuple[list[Arrival], dict[str, str]]:
    """The arrivals of `trace` (sorted) from `start_at` trace seconds after its first
    request, at trace time / `speedup`, at most `max_requests` of them and none later than
    `max_seconds`; with the map from trace models to registered ones (those replayed)."""
    if speedup <= 0:
        raise ValueError("speedup must be > 0")
    if not trace:
        return [], {}
    origin = trace[0].time + max(start_at, 0.0)
    picked: list[Request] = []
    for req in trace:
        if req.time < origin:
            continue
        if len(picked) >= max_requests or (req.time - origin) / speedup > max_seconds:
            break
        picked.append(req)
    mapping = map_models(busiest_first(picked), registered) if picked else {}
    arrivals = [
        Arrival((r.time - origin) / speedup, r.time, r.model, mapping[r.model]) for r in picked
    ]
    return arrivals, mapping


_FILL: dict[str, Any] = {"BOOL": True, "BYTES": "a", "FP16": 0.5, "FP32": 0.5, "FP64": 0.5}


def tensor_input(spec: TensorSpec) -> dict[str, Any]:
    """A valid v2 input for `spec`: any-size dimensions are 1, values a constant."""
    shape = [1 if d < 0 else d for d in spec.shape]
    value = _FILL.get(spec.datatype, 0.5 if spec.datatype == "BF16" else 1)
    return {
        "name": spec.name,
        "datatype": spec.datatype,
        "shape": shape,
        "data": [value] * math.prod(shape),
    }


def infer_body(doc: ModelVersion) -> dict[str, Any]:
    """A v2 infer request for the model, from its registered input signature."""
    return {"inputs": [tensor_input(t) for t in doc.inputs]}


def _number(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def policy_settings(
    spec: str, base: WarmSettings, speedup: float
) -> tuple[WarmSettings | None, list[str]]:
    """The warm settings a policy (named as `warm simulate` names them) runs the stack
    with, durations divided by `speedup`; None for `current`. Notes say what differs
    from the simulator's policy. ValueError for an unknown or unsupported policy."""
    kind, _, arg = spec.strip().partition(":")
    notes: list[str] = []
    overrides: dict[str, Any]
    if kind == "current" and not arg:
        return None, []
    if kind == "none" and not arg:
        overrides = {"keep_alive_s": 0.0, "load_probability": 1.0, "keep_probability": 1.0}
        notes.append("none: no keep-alive and no forecast loads (pinned models stay warm)")
    elif kind == "keepalive" and arg:
        try:
            seconds = float(arg)
        except ValueError:
            raise ValueError(f"keepalive:{arg}: SECONDS must be a number") from None
        if seconds < 0:
            raise ValueError("keepalive: SECONDS must be >= 0")
        overrides = {"keep_alive_s": seconds, "load_probability": 1.0, "keep_probability": 1.0}
    elif kind == "forecast":
        defaults = WarmSettings()
        overrides = {
            "keep_alive_s": 0.0,
            "load_probability": defaults.load_probability,
            "keep_probability": defaults.keep_probability,
            **{k: getattr(defaults, k) for k in TIME_SETTINGS if k != "keep_alive_s"},
        }
        if arg:
            key, _, value = arg.partition("=")
            if key != "budget":
                raise ValueError(f"forecast:{arg}: expected forecast:budget=HOURS")
            notes.append(
                f"forecast:{arg}: the warmer has no warm-hours budget; its forecast "
                "decisions (load/keep probabilities) ran without one"
            )
    elif kind == "warmer" and arg:
        overrides = {}
        for item in arg.split(","):
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in WarmSettings.model_fields:
                raise ValueError(f"warmer:{arg}: {item!r} is not KEY=VALUE of a warm setting")
            overrides[key.strip()] = _number(value)
    elif kind == "histogram" and not arg:
        raise ValueError(
            "histogram has no warmer equivalent (the warmer decides from forecasts and "
            "keep-alive); replay none, keepalive:SECONDS or forecast"
        )
    else:
        raise ValueError(f"unknown policy {spec!r}; expected {REPLAY_POLICY_HELP}")
    scaled = {
        k: (v / speedup if k in TIME_SETTINGS and isinstance(v, int | float) else v)
        for k, v in overrides.items()
    }
    settings = WarmSettings.model_validate({**base.model_dump(), **scaled})
    if speedup != 1 and any(k in TIME_SETTINGS for k in overrides):
        notes.append(f"warm durations ({', '.join(TIME_SETTINGS)}) divided by the speedup")
    return settings, notes


@dataclass(frozen=True)
class Outcome:
    """What happened to one request."""

    model: str
    lag_ms: float  # how late it was sent (bounded concurrency, a busy client)
    status: int | None = None  # None: no HTTP answer
    latency_ms: float | None = None
    load_ms: float | None = None
    wake_ms: float | None = None
    woke: bool = False
    retry_after: bool = False
    error: str | None = None  # transport error or "cancelled"

    @property
    def answered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def cold(self) -> bool:
        return self.load_ms is not None or self.wake_ms is not None or self.woke

    @property
    def shed(self) -> bool:
        return self.status == 503 and self.retry_after


def _header_ms(headers: Mapping[str, str], name: str) -> float | None:
    text = headers.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def outcome_from_answer(
    model: str, lag_ms: float, status: int, latency_ms: float, headers: Mapping[str, str]
) -> Outcome:
    """An answered request (`headers` looked up case-insensitively, as httpx's are)."""
    reason = headers.get(ROUTE_REASON) or ""
    return Outcome(
        model=model,
        lag_ms=lag_ms,
        status=status,
        latency_ms=latency_ms,
        load_ms=_header_ms(headers, LOAD_MS),
        wake_ms=_header_ms(headers, WAKE_MS),
        woke="woke" in reason,
        retry_after=headers.get(RETRY_AFTER) is not None,
    )


def percentiles(values: Sequence[float], qs: Sequence[int] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles `p50`... and `max`, in the values' unit; {} when empty."""
    if not values:
        return {}
    ordered = sorted(values)
    out = {f"p{q}": round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)], 3) for q in qs}
    out["max"] = round(ordered[-1], 3)
    return out


@dataclass(frozen=True)
class PoolUsage:
    """A pool's replica-time over the replay, in trace time."""

    pool: str
    replica_hours: float
    cost_per_hour: float
    source: str  # "scaling" (its size history) or "assumed-constant" (one replica)

    @property
    def cost(self) -> float:
        return self.replica_hours * self.cost_per_hour


def pool_usage(
    pool: Pool, size: PoolSize | None, start: float, end: float, speedup: float
) -> PoolUsage:
    """Replica-hours of `pool` in the wall-clock window [start, end], scaled back to trace
    time by `speedup`: from its size history when it has scaling and one, else one
    replica the whole time."""
    if pool.scaling is not None and size is not None:
        history = list(size.history) or [(size.changed_at, size.replicas)]
        seconds = replica_seconds(history, start, end)
        source = "scaling"
    else:
        seconds = max(end - start, 0.0)
        source = "assumed-constant"
    return PoolUsage(pool.id, seconds * speedup / 3600.0, pool.cost_per_hour, source)


@dataclass
class ReplayReport:
    """A replay's result: `SimulationResult`'s fields, then what a live stack shows."""

    policy: str
    trace: str
    router: str
    speedup: float
    scheduled: int
    outcomes: list[Outcome]
    wall_start: float
    wall_end: float
    trace_start: float | None
    trace_end: float | None
    stopped: str  # completed | interrupted | max-seconds
    pools: list[PoolUsage] = field(default_factory=list)
    model_map: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] | None = None
    scale_to_zero: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        outs = self.outcomes
        answered = [o for o in outs if o.answered]
        cold = [o for o in outs if o.cold]
        base = SimulationResult(
            policy=self.policy,
            requests=len(outs),
            cold_starts=len(cold),
            warm_model_hours=0.0,
            window_start=self.trace_start if self.trace_start is not None else math.nan,
            window_end=self.trace_end if self.trace_end is not None else math.nan,
            models=len({o.model for o in outs}),
        ).as_dict()
        base["warm_model_hours"] = None  # not measured: see notes
        base["window_start"], base["window_end"] = self.trace_start, self.trace_end
        errors = Counter(
            str(o.status) for o in outs if o.status is not None and not o.answered and not o.shed
        )
        transport = Counter(o.error for o in outs if o.status is None and o.error)
        wall = max(self.wall_end - self.wall_start, 0.0)
        replica_hours = sum(p.replica_hours for p in self.pools)
        notes = [
            "warm_model_hours: not measured against a running stack (which models each "
            "worker holds is not sampled); replica_hours and cost are",
            *self.notes,
        ]
        if any(p.source == "assumed-constant" for p in self.pools):
            assumed = ", ".join(p.pool for p in self.pools if p.source == "assumed-constant")
            notes.append(f"pools without scaling assumed at one replica throughout: {assumed}")
        return {
            **base,
            "mode": "replay",
            "trace": self.trace,
            "router": self.router,
            "speedup": self.speedup,
            "stopped": self.stopped,
            "scheduled": self.scheduled,
            "not_sent": self.scheduled - len(outs),
            "answered": len(answered),
            "wall_seconds": round(wall, 3),
            "trace_seconds": round(wall * self.speedup, 3),
            "cold": {
                "loads": sum(o.load_ms is not None for o in outs),
                "wakes": sum(o.wake_ms is not None or o.woke for o in outs),
                "load_ms": percentiles([o.load_ms for o in outs if o.load_ms is not None]),
                "wake_ms": percentiles([o.wake_ms for o in outs if o.wake_ms is not None]),
            },
            "latency_ms": percentiles([o.latency_ms for o in answered if o.latency_ms is not None]),
            "cold_latency_ms": percentiles(
                [o.latency_ms for o in cold if o.answered and o.latency_ms is not None]
            ),
            "errors": dict(sorted(errors.items())),
            "shed": sum(o.shed for o in outs),
            "transport_errors": dict(sorted(transport.items())),
            "lag_ms": percentiles([o.lag_ms for o in outs]),
            "replica_hours": round(replica_hours, 6) if self.pools else None,
            "cost": round(sum(p.cost for p in self.pools), 6) if self.pools else None,
            "pools": [
                {
                    "pool": p.pool,
                    "replica_hours": round(p.replica_hours, 6),
                    "cost_per_hour": p.cost_per_hour,
                    "cost": round(p.cost, 6),
                    "source": p.source,
                }
                for p in self.pools
            ],
            "settings": self.settings,
            "scale_to_zero": self.scale_to_zero,
            "model_map": self.model_map,
            "notes": notes,
        }
