"""Pre-warming benchmark: every policy on the held-out last 7 days of the Alibaba GenAI 2026
request trace, `forecast` over several budgets; prints a table, writes JSON and the Pareto
PNG, and times a warmer pass (Prophet fit + warm plan) over 100 synthetic models.

    python benchmarks/prewarm_simulation.py [--trace FILE] [--out DIR] [--no-prophet]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mpfn.forecast import FitCache, forecast_counts
from mpfn.simulator import load_trace, parse_policy, replay
from mpfn.simulator.pareto import plot_pareto
from mpfn.warm.replicas import ReplicaDemand, desired_replicas

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT.parent / "shared/data/traces/alibaba-genai-2026-lora_request_trace.csv"
BASELINES = ["none", "keepalive:600", "keepalive:1200", "keepalive:3600", "histogram"]
BUDGETS = [300, 533, 743, 1000, 1500, 2130]


def time_warmer(models: int = 100, days: int = 14) -> float:
    """Seconds for one warmer pass: fit Prophet per model on `days` of hourly counts, then
    forecast the next hour and compute desired replicas."""
    rng = np.random.default_rng(0)
    hours = np.arange(days * 24)
    start = 1_731_628_800.0
    t0 = time.perf_counter()
    cache = FitCache()
    demands = []
    for i in range(models):
        lam = rng.uniform(0.2, 30) * (1 + 0.8 * np.sin(2 * np.pi * (hours + i) / 24))
        counts = rng.poisson(lam).astype(float)
        fc = forecast_counts(f"m{i}", start, counts, 1, start + days * 86400, cache)
        demands.append(ReplicaDemand(f"m{i}", "pool", float(fc.upper[0]) / 3600, 0.01, 500))
    desired_replicas(demands, {"pool": 40_000})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", type=Path, default=TRACE)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--holdout-days", type=float, default=7)
    ap.add_argument("--no-prophet", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trace = load_trace(args.trace)
    specs = BASELINES + [f"forecast:budget={b}" for b in BUDGETS]
    results = []
    print(f"{'policy':<24}{'requests':>9}{'cold':>7}{'cold %':>8}{'warm h':>9}{'secs':>7}")
    for spec in specs:
        t0 = time.perf_counter()
        r = replay(trace, parse_policy(spec, use_prophet=not args.no_prophet), args.holdout_days)
        secs = time.perf_counter() - t0
        results.append(r)
        print(
            f"{r.policy:<24}{r.requests:>9}{r.cold_starts:>7}{100 * r.cold_start_rate:>8.2f}"
            f"{r.warm_model_hours:>9.1f}{secs:>7.1f}",
            flush=True,
        )
    plot_pareto(
        results,
        args.out / "prewarm_pareto.png",
        title=f"{args.trace.name}: last {args.holdout_days:g} days",
    )
    (args.out / "prewarm_results.json").write_text(
        json.dumps([r.as_dict() for r in results], indent=2)
    )
    print(f"warmer pass over 100 models (Prophet fit + plan): {time_warmer():.1f} s")


if __name__ == "__main__":
    main()
