"""Error answers of one kind are logged at most once a second, with the count left out."""

from __future__ import annotations

from mpfn.functions.router.logthrottle import MAX_KINDS, LogThrottle


def test_one_line_per_kind_per_interval_with_the_count_left_out() -> None:
    now = [0.0]
    throttle = LogThrottle(1.0, clock=lambda: now[0])
    assert throttle.admit("POST", "/x", 503, b"full") == 0  # the first is logged
    assert [throttle.admit("POST", "/x", 503, b"full") for _ in range(5)] == [None] * 5
    # other kinds are not held back
    assert throttle.admit("GET", "/x", 404, b"unknown model 'x'") == 0
    assert throttle.admit("POST", "/x", 503, b"other") == 0
    assert throttle.admit("POST", "/y", 503, b"full") == 0  # nor other paths
    now[0] = 1.0
    # the next line says how many were left out
    assert throttle.admit("POST", "/x", 503, b"full") == 5
    assert throttle.admit("POST", "/x", 503, b"full") is None


def test_memory_is_bounded() -> None:
    throttle = LogThrottle(60.0, clock=lambda: 0.0)
    for i in range(MAX_KINDS + 10):
        assert throttle.admit("GET", "/x", 404, str(i).encode()) == 0
    assert len(throttle._kinds) <= MAX_KINDS
