"""The engine reproduces the independently computed keep-alive numbers on the real trace."""

from __future__ import annotations

import pytest

from mpfn.simulator import KeepAlive, load_trace, replay
from tests.simulator.shared_traces import trace

TRACE = "alibaba-genai-2026-lora_request_trace.csv"


@pytest.mark.parametrize(
    ("seconds", "rate", "hours"), [(600, 0.126, 533), (1200, 0.086, 743), (3600, 0.050, 1252)]
)
def test_keepalive_reference(seconds: float, rate: float, hours: float) -> None:
    r = replay(load_trace(trace(TRACE)), KeepAlive(seconds), holdout_days=7)
    assert r.requests == 12261
    assert round(r.cold_start_rate, 3) == rate
    assert round(r.warm_model_hours) == hours
