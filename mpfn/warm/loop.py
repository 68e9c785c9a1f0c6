"""The local warm loop of `mpfn up`: the real warmer, run every `interval_s` in a thread.

Each pass is one stateless `mpfn.warm.warmer` run against the local state, with the models
`mpfn up` pins (the demo) always warm. A failing pass is logged and the loop goes on; it
never touches the router or the workers' serving path.
"""

from __future__ import annotations

import logging
import threading

from mpfn.registry import Registry
from mpfn.warm.warmer import load_settings, run_once

log = logging.getLogger("mpfn.warm")


def run_forever(
    registry: Registry,
    stop: threading.Event,
    *,
    interval_s: float = 30.0,
    keep_alive_s: float | None = None,
    pinned: frozenset[str] = frozenset(),
    site: str | None = None,
) -> None:
    """Run the warmer until `stop` is set. `keep_alive_s` (when given) applies unless
    `config/warmer.json` sets its own; `pinned` models are added to the ones it lists. With
    `site`, only that site's pools are warmed."""
    while not stop.is_set():
        try:
            base = load_settings(registry.store)
            overrides: dict[str, object] = {"pinned": sorted(set(base.pinned) | pinned)}
            if keep_alive_s is not None and "keep_alive_s" not in base.model_fields_set:
                overrides["keep_alive_s"] = keep_alive_s  # config/warmer.json's own wins
            settings = load_settings(registry.store, **overrides)
            plan = run_once(registry.store, settings=settings, site=site)
            summary = plan.summary()
            if summary["loads"] or summary["unloads"] or summary["errors"]:
                log.info("warm: %s", summary)
        except Exception as exc:  # the warm loop must never take anything down
            log.warning("warm: run failed: %s", exc)
        stop.wait(interval_s)
