"""Failover rules: what counts as a failed attempt, and how much time is left to retry.

Times are seconds from the router's injected clock. A request may fail over to the next
pool of its plan on a connection error, a timeout or a 5xx answer, but never once the
backend started streaming a response (the client already has part of it).
"""

from __future__ import annotations


def deadline_for(now: float, timeout_ms: float) -> float:
    """The absolute deadline of a request that starts at `now`."""
    return now + timeout_ms / 1000.0


def remaining_budget(deadline: float, now: float) -> float:
    """Seconds left before `deadline` (never negative)."""
    left = deadline - now
    return left if left > 0.0 else 0.0


def is_failure(status: int | None) -> bool:
    """Does this outcome count against the pool? `None` is a connection error/timeout.

    5xx answers do, except 501/505 which say the request itself is unsupported.
    """
    if status is None:
        return True
    return 500 <= status < 600 and status not in (501, 505)


def retryable(status: int | None, *, streamed: bool = False) -> bool:
    """May the request go to the next pool after this outcome?"""
    return not streamed and is_failure(status)
