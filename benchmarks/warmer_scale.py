"""How long one warmer run takes over many models (issue target: 100 models in <= 60 s).

Writes `--models` models with `--days` days of hourly usage each (a daily and weekly
pattern with Poisson noise; one router document per model and hour, in the router's exact
format) into a throw-away local state, then times three real `mpfn.warm.run_once` runs:

1. first run: reads every minute document, writes the hourly rollups, fits Prophet for
   every model (a fresh deployment, or a warmer that was down for the whole history);
2. steady run: rollups and cached fits are reused (what a 5-minute schedule costs);
3. refit run: the fits are due (the refit cadence elapsed): rollups + Prophet for all.

`--state DIR` reuses (or fills) a state directory.

    python benchmarks/warmer_scale.py [--models 100] [--days 14] [--state DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mpfn.documents import ModelVersion
from mpfn.registry import Registry
from mpfn.store import LocalStore
from mpfn.usage import FIRST_SEQUENCE, usage_document, usage_key
from mpfn.warm import WarmSettings, run_once


def populate(store: LocalStore, models: int, days: int, now: float) -> int:
    rng = np.random.default_rng(0)
    registry = Registry(store)
    hour = int(now // 3600) * 3600
    hours = np.arange(days * 24, 0, -1)
    written = 0
    for i in range(models):
        name = f"m{i:03d}"
        registry.add_model(ModelVersion(name=name, version="1"))
        t = hour - hours * 3600
        hod = (t // 3600) % 24
        dow = (t // 86400) % 7
        base = rng.uniform(0.5, 40)
        rate = base * (1 + 0.8 * np.sin(2 * np.pi * (hod - rng.integers(24)) / 24))
        rate *= np.where(dow >= 5, 0.4, 1.0)
        counts = rng.poisson(np.clip(rate, 0, None))
        for start, count in zip(t, counts, strict=True):
            if count:
                minute = int(start) // 60
                store.put(
                    usage_key(name, minute, "r1", FIRST_SEQUENCE),
                    usage_document(name, minute, "r1", int(count)),
                )
                written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--state", type=Path, default=None)
    args = parser.parse_args()
    root = args.state or Path(tempfile.mkdtemp(prefix="mpfn-warmer-scale-"))
    store = LocalStore(root)
    now = time.time()
    if not store.list("models/"):
        started = time.perf_counter()
        docs = populate(store, args.models, args.days, now)
        print(f"{args.models} models, {args.days} days, {docs} usage documents written in "
              f"{time.perf_counter() - started:.0f} s ({store.root})")  # fmt: skip
    for key in store.list("forecast/") + store.list("rollups/"):
        store.delete(key)  # every run set starts from minute documents only
    settings = WarmSettings(history_days=args.days, refit_every_s=3600)
    for label, at in (("first run", now), ("steady run", now + 60), ("refit run", now + 3700)):
        started = time.perf_counter()
        plan = run_once(store, now=at, settings=settings)
        elapsed = time.perf_counter() - started
        methods: dict[str, int] = {}
        for m in plan.models:
            methods[m.method] = methods.get(m.method, 0) + 1
        print(
            f"{label:<11} {elapsed:6.1f} s  fits {plan.fits_done:3d}  methods {methods}  "
            f"warm {sum(m.warm for m in plan.models)}  errors {len(plan.errors)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
