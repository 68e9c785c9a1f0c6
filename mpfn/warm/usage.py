"""Read a model's usage from the store: hourly counts for forecasting, minutes for recency.

Routers create documents per (model, minute, router process) with the absolute count so
far for that minute, in the format `mpfn.usage` defines; only the one with the highest
sequence per (minute, process) counts.
Reading weeks of those on every run would cost one GET per minute and instance, so the
reader keeps hourly totals of finished hours in one rollup document per model and UTC day
(`rollups/usage/<model>/<yyyy>/<mm>/<dd>.json`). An hour is rolled up (sealed) once it
ended `seal_after_s` ago; a router flush that lands later than that is not counted. After
the first run, a run reads one rollup per day plus the minute documents of the hours that
are not sealed yet or that fall in the recent window.

This module only reads usage and writes rollups; it decides nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from mpfn.state import Documents, InvalidDocument
from mpfn.store import KeyNotFound, Store
from mpfn.usage import USAGE_PREFIX, count_of, latest_usage
from mpfn.warm.plan import UsageDay, rollup_key

log = logging.getLogger("mpfn.warm")

HOUR = 3600
MINUTE = 60


@dataclass(frozen=True)
class UsageHistory:
    """One model's usage as of `now`."""

    model: str
    start: float  # Unix time of the hour `counts[0]` covers
    counts: np.ndarray  # requests per finished hour, oldest first, leading idle hours trimmed
    current: int  # requests so far in the current hour
    recent: int  # requests in [now - recent_s, now)
    last_used: float | None  # end of the latest minute with requests, within the minute span

    @property
    def hours(self) -> int:
        return len(self.counts)


def _day(epoch_s: float) -> date:
    return datetime.fromtimestamp(epoch_s, tz=UTC).date()


def _day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


class UsageReader:
    """Reads usage of one model at a time; `write_rollups=False` makes it read-only."""

    def __init__(
        self, store: Store, *, seal_after_s: float = 600.0, write_rollups: bool = True
    ) -> None:
        self.store = store
        self.docs = Documents(store)
        self.seal_after_s = seal_after_s
        self.write_rollups = write_rollups
        self.rollups_written = 0

    def history(
        self,
        model: str,
        now: float,
        *,
        days: float,
        minute_span_s: float = 0.0,
        recent_s: float = 0.0,
    ) -> UsageHistory:
        """Usage of `model` over the last `days` (finished hours) and the last minutes."""
        now_hour = int(now // HOUR) * HOUR
        first_hour = now_hour - int(days * 24) * HOUR
        minute_from = int((now - max(minute_span_s, recent_s)) // MINUTE)
        hours, minutes = self._read(model, first_hour, now_hour, now, minute_from)
        counts = np.array([hours.get(h, 0) for h in range(first_hour, now_hour, HOUR)], dtype=float)
        nonzero = np.flatnonzero(counts)
        start = float(first_hour + HOUR * int(nonzero[0])) if len(nonzero) else float(now_hour)
        counts = counts[int(nonzero[0]) :] if len(nonzero) else counts[:0]
        recent_from = (now - recent_s) / MINUTE
        used = [m for m, c in minutes.items() if c > 0 and m * MINUTE < now]
        return UsageHistory(
            model=model,
            start=start,
            counts=counts,
            current=hours.get(now_hour, 0),
            recent=sum(c for m, c in minutes.items() if recent_from <= m < now / MINUTE),
            last_used=float((max(used) + 1) * MINUTE) if used else None,
        )

    # -- internals -----------------------------------------------------------------------

    def _read(
        self, model: str, first_hour: int, last_hour: int, now: float, minute_from: int
    ) -> tuple[dict[int, int], dict[int, int]]:
        """Hour -> requests for hours in [first_hour, last_hour], minute -> requests from
        `minute_from` on."""
        hours: dict[int, int] = {}
        minutes: dict[int, int] = {}
        day = _day(first_hour)
        while _day_start(day) <= last_hour:
            self._read_day(model, day, first_hour, last_hour, now, minute_from, hours, minutes)
            day += timedelta(days=1)
        return hours, minutes

    def _read_day(
        self,
        model: str,
        day: date,
        first_hour: int,
        last_hour: int,
        now: float,
        minute_from: int,
        hours: dict[int, int],
        minutes: dict[int, int],
    ) -> None:
        base = _day_start(day)
        wanted = [h for h in range(base, base + 24 * HOUR, HOUR) if first_hour <= h <= last_hour]
        sealed = self._rollup(model, day)
        need = [
            h
            for h in wanted
            if f"{(h - base) // HOUR:02d}" not in sealed or (h + HOUR) // MINUTE > minute_from
        ]
        new: dict[str, int] = {}
        if need:
            by_hour = self._minute_counts(model, day, set(need))
            for h in need:
                per_minute = by_hour.get(h, {})
                for m, c in per_minute.items():
                    if m >= minute_from:
                        minutes[m] = minutes.get(m, 0) + c
                label = f"{(h - base) // HOUR:02d}"
                if label not in sealed and h + HOUR + self.seal_after_s <= now:
                    new[label] = sum(per_minute.values())
                hours[h] = sum(per_minute.values())
        for h in wanted:
            label = f"{(h - base) // HOUR:02d}"
            if label in sealed:
                hours[h] = sealed[label]
        if new and self.write_rollups:
            self._seal(model, day, new)

    def _rollup(self, model: str, day: date) -> dict[str, int]:
        try:
            return dict(self.docs.get(rollup_key(model, day), UsageDay).hours)
        except KeyNotFound:
            return {}
        except InvalidDocument as exc:
            log.warning("%s; recomputing from minute documents", exc)
            return {}

    def _seal(self, model: str, day: date, new: dict[str, int]) -> None:
        def merge(old: UsageDay | None) -> UsageDay:
            hours = {**new, **(old.hours if old else {})}  # a sealed hour never changes
            return UsageDay(model=model, day=day, hours=dict(sorted(hours.items())))

        self.docs.update(rollup_key(model, day), UsageDay, merge, create=True)
        self.rollups_written += 1

    def _minute_counts(self, model: str, day: date, hours: set[int]) -> dict[int, dict[int, int]]:
        """hour -> minute -> requests summed over router processes, for `hours` of `day`."""
        out: dict[int, dict[int, int]] = {}
        listed = self.store.list(f"{USAGE_PREFIX}{model}/{day:%Y/%m/%d}/")
        for key, name in latest_usage(listed).items():
            minute = name.minute
            hour = minute * MINUTE // HOUR * HOUR
            if hour not in hours:
                continue
            try:
                blob = self.store.get(key)
            except KeyNotFound:
                continue  # deleted between list and get
            if blob is None:
                continue
            per_minute = out.setdefault(hour, {})
            per_minute[minute] = per_minute.get(minute, 0) + count_of(key, blob.body)
        return out
