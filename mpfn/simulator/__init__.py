"""Trace-replay simulator for warm policies: readers, the causal replay engine, policies."""

from mpfn.simulator.baselines import KeepAlive, NoWarm
from mpfn.simulator.engine import Policy, Scoring, SimulationResult, Window, replay
from mpfn.simulator.forecast_policy import BudgetedForecast
from mpfn.simulator.histogram import HybridHistogram, decide_windows
from mpfn.simulator.policies import POLICY_HELP, parse_policy
from mpfn.simulator.traces import Request, TraceFormatError, load_trace

__all__ = [
    "POLICY_HELP",
    "BudgetedForecast",
    "HybridHistogram",
    "KeepAlive",
    "NoWarm",
    "Policy",
    "Request",
    "Scoring",
    "SimulationResult",
    "TraceFormatError",
    "Window",
    "decide_windows",
    "load_trace",
    "parse_policy",
    "replay",
]
