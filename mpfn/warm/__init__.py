"""Predictive pre-warming: forecast demand per model and keep the right models loaded.

`run_warmer` / `run_once` (`mpfn.warm.warmer`) is one stateless run: usage -> forecast ->
desired replicas per pool -> load/unload through the adapters -> `plans/warm.json`.
Decisions are pure (`decide`, `replicas`); `usage`, `fits`, `apply` and `report` are the
I/O around them; `plan` holds the documents. The run functions are imported on first use
so that importing the documents stays cheap (the CLI imports them at start).
"""

from typing import TYPE_CHECKING, Any

from mpfn.warm.plan import (
    ForecastFit,
    ForecastReport,
    ModelWarmth,
    PoolState,
    WarmAction,
    WarmPlan,
    WarmSettings,
)

if TYPE_CHECKING:
    from mpfn.warm.warmer import load_settings, run_once, run_warmer

__all__ = [
    "ForecastFit",
    "ForecastReport",
    "ModelWarmth",
    "PoolState",
    "WarmAction",
    "WarmPlan",
    "WarmSettings",
    "load_settings",
    "run_once",
    "run_warmer",
]


def __getattr__(name: str) -> Any:
    if name in ("load_settings", "run_once", "run_warmer"):
        from mpfn.warm import warmer

        return getattr(warmer, name)
    raise AttributeError(f"module 'mpfn.warm' has no attribute {name!r}")
