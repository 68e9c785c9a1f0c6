"""At most one log line per second for each kind of error answer.

Under overload the router may refuse thousands of requests a second with the same answer
(503 at capacity, 429 rate limited); writing each to the log would cost more than
refusing it. `LogThrottle.admit` lets the first answer of a kind (method, path, status
and body) through, then one per `interval_s`, and tells how many like it were left out since the
last line, so the log still says how many there were. Metrics count every answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_KINDS = 1024  # kinds remembered; past that the memory starts over


class LogThrottle:
    """Which error answers to log; `admit` returns None to leave one out, else how
    many of its kind were left out before it."""

    def __init__(
        self, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._kinds: dict[tuple[str, str, int, bytes], tuple[float, int]] = {}
        # kind -> (logged at, left out since)

    def admit(self, method: str, path: str, status: int, body: bytes) -> int | None:
        now = self.clock()
        kind = (method, path, status, body)
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self.interval_s:
            self._kinds[kind] = (seen[0], seen[1] + 1)
            return None
        if seen is None and len(self._kinds) >= MAX_KINDS:
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        return seen[1] if seen is not None else 0
