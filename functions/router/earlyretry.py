"""Connections that send again before the `Retry-After` of their last refusal.

A client that ignores `Retry-After` and resends at once is a closed loop at full tilt:
however cheap a refusal is, it sends its next request as soon as it has the answer, so a
few hundred such connections keep a router process busy answering refusals, and the
requests it admitted wait behind them (their answers are relayed by the same event loop).
By Little's law no router answers them fast: N connections each with one request in
flight, answered at X per second, wait N / X each.

`EarlyRetries` remembers when each connection (the ASGI `client` address and port) was
last refused. When a connection sends again before that refusal's `Retry-After` has
passed, and is refused again, the refusal is held until it has (`hold_s`). A connection
that honors `Retry-After` never waits; one that does not gets one refusal per
`Retry-After` instead of thousands a second. Admitted requests are never held, whoever
sends them. Connections without a port (Mangum under Lambda reports port 0) are not told
apart, so nothing is held there.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

MAX_CONNECTIONS = 65536  # most connections remembered (the oldest are forgotten first)

Connection = tuple[str, int]


def connection_of(client: Sequence[Any] | None) -> Connection | None:
    """The connection an ASGI `client` entry names; None when it names no port."""
    if not client or len(client) < 2 or not client[1]:
        return None
    return str(client[0]), int(client[1])


def hold_for(last_refused: float | None, retry_after_s: float, now: float) -> float:
    """Seconds to hold a refusal of a connection last refused at `last_refused` (None:
    never): what is left of that refusal's `Retry-After`, 0 when it has passed."""
    if last_refused is None:
        return 0.0
    return max(0.0, last_refused + retry_after_s - now)


class EarlyRetries:
    """When each recent connection was last refused; see the module's docstring."""

    def __init__(
        self,
        retry_after_s: float,
        *,
        max_connections: int = MAX_CONNECTIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry_after_s = retry_after_s
        self.max_connections = max_connections
        self.clock = clock
        self._refused: OrderedDict[Connection, float] = OrderedDict()  # oldest first
        self.held = 0  # refusals held so far

    def hold_s(self, connection: Connection | None) -> float:
        """How long to hold the refusal about to go to `connection`."""
        if connection is None:
            return 0.0
        return hold_for(self._refused.get(connection), self.retry_after_s, self.clock())

    def refused(self, connection: Connection | None) -> None:
        """`connection` was just sent a refusal with `Retry-After`."""
        if connection is None:
            return
        now = self.clock()
        refused = self._refused
        refused[connection] = now
        refused.move_to_end(connection)
        cutoff = now - self.retry_after_s
        while refused:  # forget connections whose Retry-After passed, and the oldest
            oldest, at = next(iter(refused.items()))
            if at > cutoff and len(refused) <= self.max_connections:
                break
            del refused[oldest]

    def __len__(self) -> int:
        return len(self._refused)
