"""The warmer's state documents: settings, the warm plan, cached fits and forecast reports.

| key | document |
|---|---|
| `config/warmer.json` | `WarmSettings` (optional; defaults apply when absent) |
| `plans/warm.json` | `WarmPlan`: the latest run's forecasts, desired replicas and actions |
| `forecast/<model>.json` | `ForecastFit`: a cached Prophet fit, refit on a cadence |
| `reports/forecast/<model>.json` | `ForecastReport`: forecasts per hour, for forecast-vs-actual |
| `rollups/usage/<model>/<yyyy>/<mm>/<dd>.json` | `UsageDay`: hourly totals of finished hours |

Pydantic v2, unknown fields rejected, like `mpfn.documents`. Only shapes and keys live
here: no I/O and no decisions.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SETTINGS_KEY = "config/warmer.json"
PLAN_KEY = "plans/warm.json"

Method = Literal["prophet", "profile", "none"]
Reason = Literal["pinned", "forecast", "hysteresis", "recent", "idle"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WarmSettings(_Doc):
    """How the warmer turns usage into warm models; every entry point reads the same one."""

    history_days: float = Field(default=14.0, gt=0, le=90, description="Usage history read")
    horizon_hours: int = Field(default=24, ge=1, le=24 * 14, description="Forecast length")
    window_s: float = Field(
        default=900.0, gt=0, description="Look-ahead of one run: its interval plus load time"
    )
    load_probability: float = Field(
        default=0.5, gt=0, le=1, description="Load when P(>= 1 request in the window) >= this"
    )
    keep_probability: float = Field(
        default=0.2, gt=0, le=1, description="A loaded model stays while P >= this (hysteresis)"
    )
    keep_alive_s: float = Field(default=600.0, ge=0, description="Keep models used this recently")
    recent_s: float = Field(default=900.0, gt=0, description="Window of the observed recent rate")
    replica_rps: float = Field(default=10.0, gt=0, description="Requests/s one replica sustains")
    max_replicas: int = Field(default=1, ge=1, le=64, description="Per model and pool")
    hysteresis: int = Field(default=1, ge=0, description="Replicas kept above the need")
    refit_every_s: float = Field(default=86400.0, ge=0, description="Prophet refit cadence")
    use_prophet: bool = True
    seal_after_s: float = Field(
        default=600.0, ge=0, description="An hour's usage is rolled up this long after it ends"
    )
    report_days: float = Field(default=14.0, gt=0, description="Forecast report retention")
    pinned: list[str] = Field(default_factory=list, description="Models kept loaded everywhere")
    refresh_stats: bool = Field(
        default=True, description="Probe every pool each run and write stats/<pool>.json"
    )
    scale_down_after_s: float = Field(
        default=300.0, ge=0, description="A pool shrinks once its need stayed lower this long"
    )
    scale_cooldown_s: float = Field(
        default=60.0, ge=0, description="No size change within this long of the previous one"
    )

    @model_validator(mode="after")
    def _band(self) -> WarmSettings:
        if self.keep_probability > self.load_probability:
            raise ValueError("keep_probability must be <= load_probability")
        return self


class ModelWarmth(_Doc):
    """One model's forecast and the warm decision taken from it."""

    model: str
    version: str
    method: Method
    fitted_at: datetime | None = None
    refit: bool = False
    history_hours: int = 0
    forecast_start: datetime | None = None
    yhat: float = 0.0  # forecast requests in the current hour
    upper: float = 0.0  # its upper bound
    current: int = 0  # requests counted so far in the current hour
    recent: int = 0  # requests in the last `recent_s`
    last_used: datetime | None = None  # within the last max(keep_alive_s, recent_s)
    expected: float = 0.0  # expected requests within the window (upper bound)
    probability: float = 0.0  # P(>= 1 request within the window)
    warm: bool = False
    reason: Reason = "idle"
    error: str | None = None


class PoolState(_Doc):
    """What one pool held before the run and how many replicas per model it should hold."""

    pool: str
    adapter: str
    loaded: list[str] = Field(default_factory=list)  # name:version
    desired: dict[str, int] = Field(default_factory=dict)  # model -> replicas
    error: str | None = None


class WarmAction(_Doc):
    pool: str
    model: str
    version: str
    action: Literal["load", "unload"]
    status: Literal["planned", "done", "failed"] = "planned"
    load_ms: float | None = None
    error: str | None = None


class SizeAction(_Doc):
    """A pool's size this run (pools with `scaling` only): what it was, what it should be."""

    pool: str
    current: int | None = None  # None: it could not be read
    replicas: int | None = None  # the size decided (None: not decided)
    need: int = 0  # replicas the warm plan wants there
    reason: str = ""
    status: Literal["kept", "planned", "done", "failed"] = "kept"
    error: str | None = None


class WarmPlan(_Doc):
    """The result of one warmer run; `plans/warm.json` holds the latest applied one."""

    generated_at: datetime
    applied: bool
    duration_s: float = Field(ge=0)
    settings: WarmSettings
    models: list[ModelWarmth] = Field(default_factory=list)
    pools: list[PoolState] = Field(default_factory=list)
    actions: list[WarmAction] = Field(default_factory=list)
    sizes: list[SizeAction] = Field(default_factory=list)
    fits_done: int = 0
    errors: list[str] = Field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A few numbers for logs and function responses."""
        return {
            "generated_at": self.generated_at.isoformat(),
            "applied": self.applied,
            "duration_s": round(self.duration_s, 3),
            "models": len(self.models),
            "warm": sorted(m.model for m in self.models if m.warm),
            "loads": sum(a.action == "load" and a.status == "done" for a in self.actions),
            "unloads": sum(a.action == "unload" and a.status == "done" for a in self.actions),
            "failed": sum(a.status == "failed" for a in self.actions),
            "fits": self.fits_done,
            "resized": {
                a.pool: a.replicas
                for a in self.sizes
                if a.status == "done" and a.replicas is not None
            },
            "errors": list(self.errors),
        }


class ForecastFit(_Doc):
    """A fitted Prophet model of one model's hourly counts (Prophet's own JSON)."""

    model: str
    fitted_at: datetime
    history_start: datetime
    history_hours: int = Field(ge=0)
    params: str = Field(min_length=2)


class ForecastPoint(_Doc):
    hour: datetime
    yhat: float
    upper: float
    method: Method


class ForecastReport(_Doc):
    """Forecast per hour: hours already begun keep the forecast made before they began."""

    model: str
    updated_at: datetime
    points: list[ForecastPoint] = Field(default_factory=list)


class UsageDay(_Doc):
    """Hourly request totals of one model on one UTC day; only finished hours are listed."""

    model: str
    day: date
    hours: dict[str, int] = Field(default_factory=dict)  # "00".."23" -> requests


def fit_key(model: str) -> str:
    return f"forecast/{model}.json"


def report_key(model: str) -> str:
    return f"reports/forecast/{model}.json"


def rollup_key(model: str, day: date) -> str:
    return f"rollups/usage/{model}/{day:%Y/%m/%d}.json"
