"""Forecast reports: what the warmer predicted per hour, kept to compare with what happened.

Each run merges its hourly forecast into `reports/forecast/<model>.json`: hours that have
already begun keep the forecast made before (or when) they began, hours from now on take the
new one, points older than the retention are dropped. Within an hour a cached fit gives the
same forecast again, so the document is only rewritten when something changed.
`plot_report` draws one PNG per model, forecast (with its upper bound) against the actual
hourly counts; matplotlib is imported only there.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from mpfn.forecast import HourlyForecast
from mpfn.state import Documents, InvalidDocument
from mpfn.store import KeyNotFound
from mpfn.warm.plan import ForecastPoint, ForecastReport, Method, report_key

log = logging.getLogger("mpfn.warm")

HOUR = 3600.0


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def merge_points(
    old: list[ForecastPoint],
    forecast: HourlyForecast,
    method: Method,
    now: float,
    keep_days: float,
) -> list[ForecastPoint]:
    """Old points of hours before the forecast's first hour, then the new forecast."""
    first = _utc(forecast.start)
    oldest = _utc(now) - timedelta(days=keep_days)
    kept = [p for p in old if oldest <= p.hour < first]
    new = [
        ForecastPoint(
            hour=_utc(forecast.start + i * HOUR),
            yhat=round(float(y), 4),
            upper=round(float(u), 4),
            method=method,
        )
        for i, (y, u) in enumerate(zip(forecast.yhat, forecast.upper, strict=True))
    ]
    return kept + new


def read_report(docs: Documents, model: str) -> ForecastReport | None:
    try:
        return docs.get(report_key(model), ForecastReport)
    except KeyNotFound:
        return None
    except InvalidDocument as exc:
        log.warning("%s; starting a new report", exc)
        return None


def update_report(
    docs: Documents,
    model: str,
    forecast: HourlyForecast,
    method: Method,
    now: float,
    keep_days: float,
) -> bool:
    """Merge one run's forecast into the model's report; True when it was rewritten."""
    current = read_report(docs, model)
    points = merge_points(current.points if current else [], forecast, method, now, keep_days)
    if current is not None and current.points == points:
        return False

    def merge(old: ForecastReport | None) -> ForecastReport:
        base = old.points if old else []
        merged = merge_points(base, forecast, method, now, keep_days)
        return ForecastReport(model=model, updated_at=_utc(now), points=merged)

    try:
        docs.update(report_key(model), ForecastReport, merge, create=True)
    except InvalidDocument:
        docs.replace(report_key(model), merge(None))
    return True


def plot_report(
    model: str,
    report: ForecastReport | None,
    actual_start: float,
    actual: np.ndarray,
    now: float,
    out: Path,
) -> Path:
    """One PNG: actual requests per hour vs the forecast and its upper bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def x(epochs: list[float]) -> np.ndarray:
        return np.asarray(mdates.date2num([_utc(t) for t in epochs]))

    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=100)
    try:
        if len(actual):
            hours = x([actual_start + i * HOUR for i in range(len(actual))])
            ax.step(hours, actual, where="post", color="black", lw=1.2, label="actual")
        if report is not None and report.points:
            xs = x([p.hour.timestamp() for p in report.points])
            yhat = np.array([p.yhat for p in report.points])
            upper = np.array([p.upper for p in report.points])
            ax.step(xs, yhat, where="post", color="tab:blue", lw=1.2, label="forecast")
            ax.fill_between(xs, yhat, upper, step="post", color="tab:blue", alpha=0.2,
                            label="upper bound")  # fmt: skip
        ax.axvline(float(x([now])[0]), color="tab:red", lw=0.8, ls="--", label="now")
        times = [now, *([actual_start] if len(actual) else [])]
        times += [p.hour.timestamp() for p in (report.points if report is not None else [])]
        span = x([min(times), max(times) + HOUR])
        ax.set_xlim(float(span[0]), float(span[1]))  # never autoscaled around one date
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
        ax.set_title(f"{model}: requests per hour, forecast vs actual")
        ax.set_ylabel("requests / hour")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        fig.autofmt_xdate()
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
