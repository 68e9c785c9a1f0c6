"""Helpers of the warmer tests: synthetic usage in the router's format, pools, workers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from mpfn.documents import ModelVersion
from mpfn.registry import Registry
from mpfn.store import LocalStore, Store
from mpfn.usage import FIRST_SEQUENCE, usage_document, usage_key
from tests.factories import pool
from tests.servers.process import Proc

#: A Monday, 10:30 UTC: the synthetic "now" of most tests.
NOW = datetime(2026, 3, 2, 10, 30, tzinfo=UTC).timestamp()
HOUR = 3600
CATALOG = ("busy", "idle", "sparse", "steady", "other")


@dataclass(frozen=True)
class Catalog:
    root: Path
    store: LocalStore
    models: dict[str, ModelVersion]


@dataclass(frozen=True)
class Workers:
    cheap: Proc
    dear: Proc

    def all(self) -> tuple[Proc, Proc]:
        return self.cheap, self.dear


def ready(worker: Proc) -> set[str]:
    """Models READY on a worker, from its repository index."""
    rows = httpx.post(f"{worker.url}/v2/repository/index", json={}, timeout=30).json()
    return {row["name"] for row in rows if row["state"] == "READY"}


def load(worker: Proc, model: str) -> None:
    httpx.post(f"{worker.url}/v2/repository/models/{model}/load", timeout=60).raise_for_status()


def add_models(store: Store, catalog: Catalog, names: Iterable[str]) -> None:
    registry = Registry(store)
    for name in names:
        registry.add_model(catalog.models[name])


def add_pool(store: Store, pool_id: str, endpoint: str, cost: float, adapter: str = "ort") -> None:
    Registry(store).put_pool(pool(pool_id, endpoint, adapter=adapter, cost=cost))


def write_usage(
    store: Store, model: str, counts: dict[float, int], instance: str = "router-a"
) -> None:
    """One router document per (minute, count): `counts` maps a time (Unix s) to requests."""
    for t, count in counts.items():
        minute = int(t // 60)
        store.put(
            usage_key(model, minute, instance, FIRST_SEQUENCE),
            usage_document(model, minute, instance, count),
        )


def hourly(
    now: float, hours: int, per_hour: int, *, every: int = 1, first: int = 1
) -> dict[float, int]:
    """`per_hour` requests at minute 0 of the hours `first`..`hours` hours before the current
    one (every `every`-th of them)."""
    now_hour = now // HOUR * HOUR
    return {now_hour - h * HOUR: per_hour for h in range(first, hours + 1) if h % every == 0}
