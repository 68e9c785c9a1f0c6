"""Connections that send again before the `Retry-After` of their last refusal.

A client that ignores `Retry-After` and resends at once is a closed loop at full tilt:
however cheap a refusal is, it sends its next request as soon as it has the answer, so a
few hundred such connections keep a router process busy answering refusals, and the
requests it admitted wait behind them (their answers are relayed by the same event loop).
By Little's law no router answers them fast: N connections each with one request in
flight, answered at X per second, wait N / X each.

`EarlyRetries` remembers when each connection (the ASGI `client` address and port) was
last refused, and how many refusals in a row it was sent, each before the wait of the
one before (the shorter of its `Retry-After` and `retry-after-ms`: `retryafter`), without
being served in between. From the `HOLD_AFTER`th such early refusal in a row, a refusal
is held until the wait of the one before has passed (`refusing`). A connection that
honors its wait never waits here. One shared by callers that each honor it (a client
library's connection pool hands a connection whose caller now waits to another caller)
is also sent again early, but is served in between unless nearly everything is refused,
so it is rarely held. A connection at full tilt gets one refusal per wait instead of
thousands a second. Admitted requests are never held, whoever sends them. Connections
without a port (Mangum under Lambda reports port 0) are not told apart, so nothing is
held there.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

MAX_CONNECTIONS = 65536  # most connections remembered (the oldest are forgotten first)
HOLD_AFTER = 3  # early refusals in a row before one is held
# A connection is forgotten this many `Retry-After`s after its last refusal. More than
# one: a held refusal goes out just as the `Retry-After` before it ends, and its row
# must still be there when it does, or the connection would start a new row each time.
FORGET_AFTER = 2.0

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
    """When each recent connection was last refused, and how many early refusals in a
    row it has had; see the module's docstring."""

    def __init__(
        self,
        retry_after_s: float,
        *,
        hold_after: int = HOLD_AFTER,
        max_connections: int = MAX_CONNECTIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry_after_s = retry_after_s
        self.hold_after = hold_after
        self.max_connections = max_connections
        self.clock = clock
        # connection -> (when it was last refused, early refusals in a row, how long that
        # refusal asked it to wait); oldest first
        self._refused: OrderedDict[Connection, tuple[float, int, float]] = OrderedDict()

    def refusing(self, connection: Connection | None) -> float:
        """A refusal is about to go to `connection`: count it, and return how long to
        hold it (0: send it at once)."""
        if connection is None:
            return 0.0
        entry = self._refused.get(connection)
        if entry is None:
            self._refused[connection] = (self.clock(), 0, self.retry_after_s)
            return 0.0
        last, early, wait_s = entry
        left = hold_for(last, wait_s, self.clock())
        early = early + 1 if left > 0 else 0
        self._refused[connection] = (last, early, wait_s)
        return left if early >= self.hold_after else 0.0

    def refused(self, connection: Connection | None, wait_s: float | None = None) -> None:
        """A refusal asking to wait `wait_s` (default: `retry_after_s`) was just sent to
        `connection` (`refusing` counted it, or it is counted now as not early)."""
        if connection is None:
            return
        now = self.clock()
        refused = self._refused
        early = refused[connection][1] if connection in refused else 0
        refused[connection] = (now, early, self.retry_after_s if wait_s is None else wait_s)
        refused.move_to_end(connection)
        cutoff = now - FORGET_AFTER * self.retry_after_s
        while refused:  # forget connections long past their Retry-After, and the oldest
            oldest, (at, _, _) = next(iter(refused.items()))
            if at > cutoff and len(refused) <= self.max_connections:
                break
            del refused[oldest]

    def served(self, connection: Connection | None) -> None:
        """`connection` was admitted: its refusals in a row are over."""
        if connection is not None:
            self._refused.pop(connection, None)

    def __len__(self) -> int:
        return len(self._refused)
