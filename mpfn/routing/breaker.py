"""Per-pool circuit breaker as a pure state machine (closed -> open -> half-open).

`Breaker` is an immutable value; every transition function takes the current value and
the time `now` (seconds from an injected clock) and returns the next value. Closed: all
requests pass, consecutive failures are counted. After `failure_threshold` of them the
breaker opens and refuses requests for `cooldown_s`. Then it is half-open: up to
`probes` requests are admitted; a success closes it, a failure reopens it for another
cool-down. Nothing here reads a clock or keeps state of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BreakerState = Literal["closed", "open", "half-open"]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    cooldown_s: float = 10.0
    probes: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.probes < 1 or self.cooldown_s < 0:
            raise ValueError("failure_threshold and probes must be >= 1, cooldown_s >= 0")


DEFAULT_BREAKER = BreakerConfig()


@dataclass(frozen=True, slots=True)
class Breaker:
    """`failures`: consecutive failures; `opened_at`: when it last opened;
    `probing`: admitted half-open requests not yet answered."""

    state: BreakerState = "closed"
    failures: int = 0
    opened_at: float = 0.0
    probing: int = 0


CLOSED = Breaker()


def current(b: Breaker, now: float, cfg: BreakerConfig = DEFAULT_BREAKER) -> BreakerState:
    """The state at `now`: an open breaker whose cool-down has passed is half-open."""
    if b.state == "open" and now - b.opened_at >= cfg.cooldown_s:
        return "half-open"
    return b.state


def admits(b: Breaker, now: float, cfg: BreakerConfig = DEFAULT_BREAKER) -> bool:
    """May a request go to this pool at `now`?"""
    if b.state == "closed":
        return True
    if b.state == "open":
        return now - b.opened_at >= cfg.cooldown_s
    return b.probing < cfg.probes


def on_attempt(b: Breaker, now: float, cfg: BreakerConfig = DEFAULT_BREAKER) -> Breaker:
    """A request was sent; in half-open it takes one probe slot."""
    if b.state == "closed":
        return b
    if current(b, now, cfg) == "half-open":
        probing = b.probing if b.state == "half-open" else 0
        return Breaker("half-open", b.failures, b.opened_at, probing + 1)
    return b


def on_success(b: Breaker, now: float, cfg: BreakerConfig = DEFAULT_BREAKER) -> Breaker:
    """A request succeeded: a half-open breaker closes, a closed one forgets its failures."""
    if b.state == "open" and current(b, now, cfg) == "open":
        return b  # a late answer from before the breaker opened proves nothing
    return CLOSED


def on_failure(b: Breaker, now: float, cfg: BreakerConfig = DEFAULT_BREAKER) -> Breaker:
    """A request failed (connection error, timeout or 5xx)."""
    if b.state == "closed":
        failures = b.failures + 1
        if failures >= cfg.failure_threshold:
            return Breaker("open", failures, now, 0)
        return Breaker("closed", failures, b.opened_at, 0)
    if b.state == "open" and current(b, now, cfg) == "open":
        return b  # already open: a late failure does not extend the cool-down
    return Breaker("open", b.failures + 1, now, 0)


def on_abandon(b: Breaker) -> Breaker:
    """A request was sent but its outcome will never be known (the caller went away):
    give back its half-open probe slot, count nothing."""
    if b.state == "half-open" and b.probing > 0:
        return Breaker("half-open", b.failures, b.opened_at, b.probing - 1)
    return b
