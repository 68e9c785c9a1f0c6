"""The replay engine: definitions, scoring window, and that policies cannot see the future."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from mpfn.simulator import KeepAlive, NoWarm, Request, Scoring, Window, replay
from mpfn.simulator.engine import DAY


def _trace(times: list[float], model: str = "m") -> list[Request]:
    return [Request(t, model) for t in times]


def test_keepalive_definitions() -> None:
    trace = [*_trace([0, 100, 800, 900]), Request(DAY + 10, "m")]
    r = replay(sorted(trace), KeepAlive(600), holdout_days=10)
    # 0 cold, 100 warm, 800 cold (700 > 600), 900 warm, DAY+10 cold; the scored window
    # ends at the last request, so the last keep-alive adds nothing
    assert (r.requests, r.cold_starts) == (5, 3)
    assert r.warm_model_hours == pytest.approx((700 + 700) / 3600)


def test_none_loads_nothing() -> None:
    r = replay(_trace([0, 5, 10]), NoWarm(), holdout_days=1)
    assert r.cold_starts == 3 and r.warm_model_hours == 0


def test_only_last_days_scored() -> None:
    trace = _trace([0, 1000, 3 * DAY])
    r = replay(trace, KeepAlive(600), holdout_days=1)
    assert r.requests == 1 and r.window_start == 2 * DAY


class _Spy:
    """Records everything it is shown and pre-warms far ahead (allowed: it is a decision)."""

    name = "spy"
    tick_seconds: float | None = 60.0

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.clock: list[float] = []

    def begin(self, first_time: float, scoring: Scoring) -> None:
        self.seen.clear()

    def on_request(self, request: Request) -> Window:
        self.seen.append(request.time)
        self.clock.append(request.time)
        return Window(request.time, request.time + 120)

    def on_tick(self, now: float) -> Mapping[str, Window]:
        self.clock.append(now)
        assert all(t <= now for t in self.seen), "a request from the future was shown"
        return {"m": Window(now - 500, now + 30)}  # start in the past is clipped to now


def test_policy_never_sees_the_future() -> None:
    spy = _Spy()
    replay(_trace([10, 200, 5000, 9000]), spy, holdout_days=1)
    assert spy.clock == sorted(spy.clock)


def test_decisions_before_t_do_not_depend_on_requests_after_t() -> None:
    base = _trace([10, 200, 5000])
    a, b = _Spy(), _Spy()
    replay(base + _trace([9000]), a, holdout_days=1)
    replay([*base, Request(7000, "x"), Request(9000, "m")], b, holdout_days=1)
    cut = [t for t in a.clock if t < 7000]
    assert cut == [t for t in b.clock if t < 7000]


def test_window_in_the_past_is_not_warm_retroactively() -> None:
    class Late(_Spy):
        def on_request(self, request: Request) -> Window:
            return Window(request.time, request.time)

        def on_tick(self, now: float) -> Mapping[str, Window]:
            return {"m": Window(now - 1000, now)}

    r = replay(_trace([0, 30, 500]), Late(), holdout_days=1)
    assert r.warm_model_hours == 0 and r.cold_starts == 3
