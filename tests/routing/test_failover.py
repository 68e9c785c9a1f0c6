from __future__ import annotations

from mpfn.routing import deadline_for, is_failure, remaining_budget, retryable


def test_budget() -> None:
    deadline = deadline_for(100.0, 1500)
    assert deadline == 101.5
    assert remaining_budget(deadline, 101.0) == 0.5
    assert remaining_budget(deadline, 102.0) == 0.0


def test_what_fails_over() -> None:
    assert retryable(None)  # connection error / timeout
    assert retryable(503) and retryable(500) and retryable(504)
    assert not retryable(501) and not retryable(404) and not retryable(200)
    assert not retryable(503, streamed=True)
    assert is_failure(502) and not is_failure(429)
