"""Reference policies without forecasting: no pre-warming and fixed keep-alive."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mpfn.simulator.engine import Scoring, Window
from mpfn.simulator.traces import Request


@dataclass
class NoWarm:
    """Unload right after every request: every request whose model is idle is cold."""

    name: str = "none"
    tick_seconds: float | None = None

    def begin(self, first_time: float, scoring: Scoring) -> None:
        pass

    def on_request(self, request: Request) -> Window:
        return Window(request.time, request.time)

    def on_tick(self, now: float) -> Mapping[str, Window]:
        return {}


@dataclass
class KeepAlive:
    """Keep a model loaded for a fixed `seconds` after each request (AWS 600 s, Azure 1200 s)."""

    seconds: float
    tick_seconds: float | None = None

    @property
    def name(self) -> str:
        return f"keepalive:{self.seconds:g}"

    def begin(self, first_time: float, scoring: Scoring) -> None:
        pass

    def on_request(self, request: Request) -> Window:
        return Window(request.time, request.time + self.seconds)

    def on_tick(self, now: float) -> Mapping[str, Window]:
        return {}
