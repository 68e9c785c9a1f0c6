"""Trace replay: feed a policy the past, one event at a time, and score the held-out window.

The engine owns the clock. A policy sees each request only when it arrives and a periodic
tick (every `tick_seconds`); it is never handed the trace, so it cannot look ahead. Every
decision is a `Window` during which one model is loaded; the engine refuses windows that
start in the past, so a policy cannot warm a model retroactively either.

Definitions (the scoring the CLI prints):
- a model is warm from when it is loaded (by a request or a window) until it is unloaded;
- a request is a cold start if its model is not warm when it arrives; a request always
  loads its model, and the policy then says how long it stays (its `on_request` window);
- warm model-hours = the integral of the number of warm models over the scored window,
  which is the last `holdout_days` days of the trace, ending at its last request;
- execution time is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mpfn.simulator.traces import Request

DAY = 86400.0


@dataclass(frozen=True)
class Window:
    """Keep `model` loaded from `start` to `end` (Unix seconds; `end <= start` = unloaded)."""

    start: float
    end: float


@dataclass(frozen=True)
class Scoring:
    """The scored window [start, end] a policy is told about (its length is no secret)."""

    start: float
    end: float


class Policy(Protocol):
    """A warm policy. Methods are called in time order; `now` never decreases."""

    @property
    def name(self) -> str: ...

    tick_seconds: float | None

    def begin(self, first_time: float, scoring: Scoring) -> None: ...

    def on_request(self, request: Request) -> Window:
        """The model was just requested (and is loaded): how long should it stay loaded?"""
        ...

    def on_tick(self, now: float) -> Mapping[str, Window]:
        """Periodic decision: new windows for some models (others keep theirs)."""
        ...


@dataclass
class SimulationResult:
    policy: str
    requests: int
    cold_starts: int
    warm_model_hours: float
    window_start: float
    window_end: float
    models: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def cold_start_rate(self) -> float:
        return self.cold_starts / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "requests": self.requests,
            "cold_starts": self.cold_starts,
            "cold_start_rate": round(self.cold_start_rate, 6),
            "warm_model_hours": round(self.warm_model_hours, 3),
            "models": self.models,
            "window_start": self.window_start,
            "window_end": self.window_end,
            **self.extra,
        }


class _Ledger:
    """Per-model current window, committing consumed warm time inside the scored window."""

    def __init__(self, scoring: Scoring) -> None:
        self.scoring = scoring
        self.windows: dict[str, Window] = {}
        self.seconds = 0.0

    def _commit(self, w: Window, until: float) -> None:
        lo = max(w.start, self.scoring.start)
        hi = min(w.end, until, self.scoring.end)
        if hi > lo:
            self.seconds += hi - lo

    def is_warm(self, model: str, t: float) -> bool:
        w = self.windows.get(model)
        return w is not None and w.start <= t <= w.end

    def set(self, model: str, w: Window, now: float, by_request: bool = False) -> None:
        """Replace the model's window; an empty window unloads it, unless a request just
        loaded it (then it is warm at that instant, for requests arriving together)."""
        old = self.windows.pop(model, None)
        if old is not None:
            self._commit(old, now)
        start = max(w.start, now)
        if w.end > start or (by_request and w.end >= start):
            self.windows[model] = Window(start, w.end)

    def close(self) -> None:
        for w in self.windows.values():
            self._commit(w, math.inf)
        self.windows.clear()


def scoring_window(trace: Sequence[Request], holdout_days: float) -> Scoring:
    if not trace:
        raise ValueError("empty trace")
    if holdout_days <= 0:
        raise ValueError("holdout days must be positive")
    end = trace[-1].time
    return Scoring(max(trace[0].time, end - holdout_days * DAY), end)


#: How many requests pass between two calls of `replay`'s progress callback.
PROGRESS_EVERY = 5000


def replay(
    trace: Sequence[Request],
    policy: Policy,
    holdout_days: float,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Replay `trace` (sorted by time) through `policy`, scoring the last `holdout_days`;
    `progress(done, total)` is called after every tick and every `PROGRESS_EVERY` requests."""
    scoring = scoring_window(trace, holdout_days)
    ledger = _Ledger(scoring)
    first = trace[0].time
    policy.begin(first, scoring)
    tick = policy.tick_seconds
    next_tick = first if tick else math.inf
    requests = cold = 0
    models: set[str] = set()
    for done, req in enumerate(trace):
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done, len(trace))
        while next_tick <= req.time:
            for model, w in policy.on_tick(next_tick).items():
                ledger.set(model, w, next_tick)
            next_tick += tick or math.inf
            if progress is not None:
                progress(done, len(trace))
        scored = req.time >= scoring.start
        if scored:
            requests += 1
            models.add(req.model)
            cold += not ledger.is_warm(req.model, req.time)
        w = policy.on_request(req)
        # the request loaded the model; it stays until the window ends, or, if the window
        # starts later (a pre-warm), it is unloaded now and loaded again at the window start
        stay = w if w.start > req.time else Window(req.time, max(req.time, w.end))
        ledger.set(req.model, stay, req.time, by_request=True)
    ledger.close()
    extra: dict[str, float] = getattr(policy, "report", dict)()
    return SimulationResult(
        policy=policy.name,
        requests=requests,
        cold_starts=cold,
        warm_model_hours=ledger.seconds / 3600.0,
        window_start=scoring.start,
        window_end=scoring.end,
        models=len(models),
        extra=dict(extra),
    )
