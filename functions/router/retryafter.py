"""The wait a refusal for want of capacity asks for, spread so refused clients come back apart.

Every such refusal says `Retry-After: 1` (whole seconds, all HTTP allows there) and
`retry-after-ms` (the same wait in milliseconds, which the openai SDK reads first), the
latter drawn evenly from 1 s +- `spread`. Clients refused together, as a burst is, would
otherwise all come back together after exactly one second, each time: a herd the router
then answers one after the other, the last of them after all the others. Spread, they
come back apart, on average after the same second, so no more often.

`early_s` is the shorter of the two waits: a client honoring either one is not early.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRY_AFTER_S = 1.0  # what `Retry-After` says
RETRY_AFTER = (b"retry-after", b"%d" % RETRY_AFTER_S)
DEFAULT_SPREAD = 0.5  # `retry-after-ms` in [0.5 s, 1.5 s]

Header = tuple[bytes, bytes]


def spread_ms(base_s: float, spread: float, u: float) -> int:
    """The wait in milliseconds for a draw `u` in [0, 1): evenly over base +- spread."""
    return round(base_s * 1000.0 * (1.0 - spread + 2.0 * spread * u))


@dataclass(frozen=True, slots=True)
class Wait:
    """One refusal's wait: its headers, and how soon a client honoring them may send."""

    headers: tuple[Header, ...]
    early_s: float


class RetryAfter:
    """Draws each refusal's wait (`spread` 0: always exactly `Retry-After`)."""

    def __init__(self, spread: float = DEFAULT_SPREAD, rng: random.Random | None = None) -> None:
        if not 0.0 <= spread < 1.0:
            raise ValueError("spread must be in [0, 1)")
        self.spread = spread
        self.rng = rng or random.Random()
        self.plain = Wait((RETRY_AFTER,), RETRY_AFTER_S)

    def draw(self) -> Wait:
        if not self.spread:
            return self.plain
        ms = spread_ms(RETRY_AFTER_S, self.spread, self.rng.random())
        early_s = min(ms / 1000.0, RETRY_AFTER_S)
        return Wait((RETRY_AFTER, (b"retry-after-ms", b"%d" % ms)), early_s)
