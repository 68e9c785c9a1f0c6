"""Pareto chart: cold-start rate against warm model-hours for every policy run.

`forecast` results are drawn as one curve over their budgets; the others as points. Both
axes start at zero, so policies that differ little look close.
matplotlib is imported lazily (optional dependency); the file is written with the Agg backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mpfn.simulator.engine import SimulationResult


def set_axes(ax: Any, hours: Sequence[float], percents: Sequence[float]) -> None:
    """Both axes from zero, in plain numbers: points close together are not magnified
    into an axis spanning a fraction of an hour around an offset."""
    from matplotlib.ticker import ScalarFormatter

    right = 1.08 * max((*hours, 1e-9))
    top = min(104.0, 1.12 * max((*percents, 1.0)))
    ax.set_xlim(-0.02 * right, right)  # a sliver below zero: markers at 0 stay whole
    ax.set_ylim(-0.02 * top, top)
    for axis in (ax.xaxis, ax.yaxis):
        formatter = ScalarFormatter(useOffset=False)
        formatter.set_scientific(False)
        axis.set_major_formatter(formatter)


def plot_pareto(results: Sequence[SimulationResult], out: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    forecast = sorted(
        (r for r in results if r.policy.startswith("forecast")), key=lambda r: r.warm_model_hours
    )
    if forecast:
        ax.plot(
            [r.warm_model_hours for r in forecast],
            [100 * r.cold_start_rate for r in forecast],
            "o-",
            color="tab:red",
            label="forecast (budgets)",
        )
    keep = sorted(
        (r for r in results if r.policy.startswith("keepalive")), key=lambda r: r.warm_model_hours
    )
    if keep:
        ax.plot(
            [r.warm_model_hours for r in keep],
            [100 * r.cold_start_rate for r in keep],
            "s--",
            color="tab:blue",
            label="fixed keep-alive",
        )
        for r in keep:
            ax.annotate(
                r.policy.split(":")[1] + " s",
                (r.warm_model_hours, 100 * r.cold_start_rate),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    for r in results:
        if r.policy in ("histogram", "none"):
            ax.plot(r.warm_model_hours, 100 * r.cold_start_rate, "^", markersize=9, label=r.policy)
    ax.set_xlabel("warm model-hours in the scored window")
    ax.set_ylabel("cold starts (% of requests)")
    set_axes(ax, [r.warm_model_hours for r in results], [100 * r.cold_start_rate for r in results])
    ax.set_title(title or "Cold starts vs warm model-hours")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
