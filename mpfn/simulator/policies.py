"""Parse policy specs (`none`, `keepalive:SECONDS`, `histogram`, `forecast:budget=HOURS`)."""

from __future__ import annotations

from mpfn.simulator.baselines import KeepAlive, NoWarm
from mpfn.simulator.engine import Policy
from mpfn.simulator.forecast_policy import BudgetedForecast
from mpfn.simulator.histogram import HybridHistogram

POLICY_HELP = "none | keepalive:SECONDS | histogram | forecast:budget=HOURS"


def parse_policy(spec: str, use_prophet: bool = True) -> Policy:
    kind, _, arg = spec.strip().partition(":")
    unknown = ValueError(f"unknown policy {spec!r}; expected {POLICY_HELP}")
    try:
        if kind == "none" and not arg:
            return NoWarm()
        if kind == "keepalive" and arg:
            seconds = float(arg)
            if seconds >= 0:
                return KeepAlive(seconds)
        if kind == "histogram" and not arg:
            return HybridHistogram()
        if kind == "forecast":
            key, _, value = arg.partition("=")
            if key == "budget" and float(value) >= 0:
                return BudgetedForecast(float(value), use_prophet=use_prophet)
    except ValueError as exc:  # a number that is not one
        raise unknown from exc
    raise unknown
