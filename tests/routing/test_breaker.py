from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mpfn.routing.breaker import (
    CLOSED,
    BreakerConfig,
    admits,
    current,
    on_attempt,
    on_failure,
    on_success,
)

CFG = BreakerConfig(failure_threshold=3, cooldown_s=10.0, probes=1)


def test_opens_after_consecutive_failures_and_recovers() -> None:
    b = CLOSED
    for t in (0.0, 1.0):
        b = on_failure(b, t, CFG)
        assert current(b, t, CFG) == "closed"
    b = on_success(b, 1.5, CFG)
    assert b.failures == 0  # a success resets the streak
    for t in (2.0, 3.0, 4.0):
        b = on_failure(b, t, CFG)
    assert current(b, 4.0, CFG) == "open"
    assert not admits(b, 13.9, CFG)
    assert current(b, 14.0, CFG) == "half-open"
    assert admits(b, 14.0, CFG)
    b = on_attempt(b, 14.0, CFG)
    assert b.state == "half-open"
    assert not admits(b, 14.1, CFG)  # the one probe is taken
    b = on_success(b, 14.2, CFG)
    assert b == CLOSED


def test_failed_probe_reopens_for_a_new_cooldown() -> None:
    b = CLOSED
    for t in (0.0, 0.1, 0.2):
        b = on_failure(b, t, CFG)
    b = on_attempt(b, 10.5, CFG)
    b = on_failure(b, 10.6, CFG)
    assert current(b, 10.6, CFG) == "open"
    assert not admits(b, 20.5, CFG)
    assert admits(b, 20.6, CFG)


def test_late_answers_while_open_change_nothing() -> None:
    b = CLOSED
    for t in (0.0, 0.1, 0.2):
        b = on_failure(b, t, CFG)
    assert on_failure(b, 5.0, CFG) is b
    assert on_success(b, 5.0, CFG) is b


events = st.lists(
    st.tuples(st.sampled_from(["attempt", "ok", "fail"]), st.floats(0, 5)), max_size=60
)


@given(events)
def test_state_machine_invariants(seq: list[tuple[str, float]]) -> None:
    b = CLOSED
    now = 0.0
    streak = 0
    for kind, dt in seq:
        now += dt
        state = current(b, now, CFG)
        if kind == "attempt":
            if not admits(b, now, CFG):
                assert state == "open" or b.probing >= CFG.probes
                continue
            b = on_attempt(b, now, CFG)
            assert b.probing <= CFG.probes
        elif kind == "ok":
            b = on_success(b, now, CFG)
            if state != "open":
                assert b == CLOSED
                streak = 0
        else:
            b = on_failure(b, now, CFG)
            if state == "closed":
                streak += 1
                assert (b.state == "open") == (streak >= CFG.failure_threshold)
            elif state == "half-open":
                assert b.state == "open" and b.opened_at == now
        if b.state == "open":
            streak = 0
        assert b.state == "closed" or b.failures >= CFG.failure_threshold
        reopen = b.opened_at + CFG.cooldown_s + 1e-6
        assert admits(b, reopen, CFG) or b.state == "half-open"
