"""Fixed keep-alive warm policy: keep a model loaded while it was used recently.

`decide` is pure (inputs: what is loaded, when each model was last used, now); the loop
that reads usage and calls the adapters' load/unload lives in `mpfn.warm.loop`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WarmActions:
    load: frozenset[str] = field(default_factory=frozenset)
    unload: frozenset[str] = field(default_factory=frozenset)


def decide(
    loaded: frozenset[str],
    last_used: Mapping[str, float],
    now: float,
    keep_alive_s: float,
    pinned: frozenset[str] = frozenset(),
) -> WarmActions:
    """Load models used within `keep_alive_s` that are not loaded; unload idle ones.

    `pinned` models are always kept loaded (e.g. the demo model of `mpfn up`).
    """
    recent = {m for m, t in last_used.items() if now - t <= keep_alive_s} | pinned
    return WarmActions(load=frozenset(recent - loaded), unload=frozenset(loaded - recent))
