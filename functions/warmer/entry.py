"""Run the warmer once from the environment and summarize it; shared by every entry point.

The state comes from `MPFN_STATE` (or `mpfn.yaml`, as for the CLI); store options such as
an S3 endpoint come from the usual SDK variables. `MPFN_WARM_SITE` limits the run to one
site's pools. `run_from_env` never raises: a failed run is `{"ok": false, "error":
"<one line>"}`. The warmer is off the routing path, so a
failure here only means models are not pre-warmed this time.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from mpfn.config import load_config
from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.replication import open_state
from mpfn.store import Store, StoreError

log = logging.getLogger("mpfn.warm")
SITE_ENV = "MPFN_WARM_SITE"  # set by deploy for a site's warmer: it warms that site's pools


def run_from_env(*, state: str | None = None, apply: bool = True) -> dict[str, Any]:
    """One warmer run against `state` (default: `MPFN_STATE`); the run's summary."""
    started = time.perf_counter()
    try:
        from mpfn.warm import run_once
        from mpfn.warm.metrics import export

        config = load_config(state)
        site = os.environ.get(SITE_ENV) or None
        store = open_state(config.state, config.options)
        plan = run_once(store, apply=apply, site=site)
        metrics = export(plan, pools=_pools(store))
        return {"ok": True, "state": config.state, "metrics": metrics, **plan.summary()}
    except Exception as exc:  # report, never raise: the scheduler retries on its cadence
        message = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]
        log.error("warmer run failed: %s", message)
        return {
            "ok": False,
            "error": message,
            "duration_s": round(time.perf_counter() - started, 3),
        }


def _pools(store: Store) -> list[Pool]:
    """The registry's pools, for their prices in the metrics; none when unreadable."""
    try:
        return Registry(store).pools()
    except StoreError as exc:
        log.warning("pool prices left out of the metrics: %s", exc)
        return []
