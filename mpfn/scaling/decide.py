"""A pool's next size from what it needs: bounds, scale up at once, scale down only after
the need has stayed lower for a while. Pure: the caller passes the clock and the past.

    need 3, size 1            -> 3 ("up: need 3")
    need 0, size 2, below 40 s -> 2 ("down in 260 s": waits out `down_after_s`)
    need 0, size 2, below 300 s -> min_replicas ("down: idle for 300 s")

`below_since` is when the need first fell below the current size (None while it is not
below); the caller keeps it between runs (`PoolSize.below_since`). A size just changed
is not changed again within `cooldown_s`, so two runs close together cannot flap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScaleSettings:
    down_after_s: float = 300.0  # the need must stay lower this long before scaling down
    cooldown_s: float = 60.0  # no change within this long of the previous one


@dataclass(frozen=True)
class SizeDecision:
    replicas: int
    reason: str
    below_since: float | None  # to keep for the next decision

    def changes(self, current: int) -> bool:
        return self.replicas != current


def clamp(need: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, need))


def decide_size(
    need: int,
    current: int,
    *,
    min_replicas: int,
    max_replicas: int,
    now: float,
    changed_at: float | None = None,
    below_since: float | None = None,
    settings: ScaleSettings = ScaleSettings(),
) -> SizeDecision:
    """The size to set now (see the module docstring)."""
    target = clamp(need, min_replicas, max_replicas)
    if current < min_replicas or current > max_replicas:
        return SizeDecision(target, f"outside bounds [{min_replicas}, {max_replicas}]", None)
    if target == current:
        return SizeDecision(current, "at need", None)
    recent = changed_at is not None and now - changed_at < settings.cooldown_s
    if target > current:
        if recent and current > 0:
            return SizeDecision(current, f"up to {target} after cooldown", None)
        return SizeDecision(target, f"up: need {need}", None)
    since = below_since if below_since is not None else now
    waited = now - since
    if waited < settings.down_after_s or recent:
        left = max(settings.down_after_s - waited, 0.0)
        return SizeDecision(current, f"down to {target} in {left:.0f} s", since)
    return SizeDecision(target, f"down: need {need} for {waited:.0f} s", None)
