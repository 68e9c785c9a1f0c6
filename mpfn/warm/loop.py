"""The local warm loop: read recent usage, apply keep-alive decisions to ORT pools.

I/O shell around `mpfn.warm.keepalive.decide`. Usage comes from the per-minute documents
routers flush to `usage/<model>/<yyyy>/<mm>/<dd>/<hh>/<minute>-<instance>.json`; loading
and unloading go through each pool's model-repository API with an injected httpx client.
A failure here is logged and never affects routing.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import httpx

from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.warm.keepalive import WarmActions, decide

log = logging.getLogger("mpfn.warm")


def usage_hour_prefixes(model: str, now: datetime, window: timedelta) -> list[str]:
    """Store prefixes of every hour that overlaps [now - window, now]."""
    start = (now - window).replace(minute=0, second=0, microsecond=0)
    prefixes = []
    hour = start
    while hour <= now:
        prefixes.append(f"usage/{model}/{hour:%Y/%m/%d/%H}/")
        hour += timedelta(hours=1)
    return prefixes


def minute_of_key(key: str) -> datetime | None:
    """`usage/m/2026/11/29/08/53-abc.json` -> 2026-11-29 08:53 UTC."""
    parts = key.split("/")
    try:
        yyyy, mm, dd, hh = (int(p) for p in parts[-5:-1])
        minute = int(parts[-1].split("-", 1)[0])
        return datetime(yyyy, mm, dd, hh, minute, tzinfo=UTC)
    except (ValueError, IndexError):
        return None


def last_used(
    registry: Registry, models: list[str], now: datetime, window: timedelta
) -> dict[str, float]:
    seen: dict[str, float] = {}
    for model in models:
        for prefix in usage_hour_prefixes(model, now, window):
            for key in registry.store.list(prefix):
                minute = minute_of_key(key)
                if minute is not None:
                    ts = minute.timestamp() + 60  # counted up to the end of that minute
                    seen[model] = max(seen.get(model, 0.0), ts)
    return seen


def loaded_models(client: httpx.Client, pool: Pool) -> frozenset[str]:
    resp = client.post(f"{str(pool.endpoint).rstrip('/')}/v2/repository/index", json={})
    resp.raise_for_status()
    return frozenset(m["name"] for m in resp.json() if m.get("state") == "READY")


def apply(client: httpx.Client, pool: Pool, actions: WarmActions) -> None:
    base = str(pool.endpoint).rstrip("/")
    for model in sorted(actions.load):
        client.post(f"{base}/v2/repository/models/{model}/load").raise_for_status()
        log.info("warm: loaded %s on %s", model, pool.id)
    for model in sorted(actions.unload):
        client.post(f"{base}/v2/repository/models/{model}/unload").raise_for_status()
        log.info("warm: unloaded %s on %s", model, pool.id)


def run_once(
    registry: Registry,
    client: httpx.Client,
    *,
    keep_alive_s: float,
    pinned: frozenset[str] = frozenset(),
    now: datetime | None = None,
) -> dict[str, WarmActions]:
    now = now or datetime.now(UTC)
    models = sorted({m.name for m in registry.models() if m.format == "onnx"})
    used = last_used(registry, models, now, timedelta(seconds=keep_alive_s))
    plan: dict[str, WarmActions] = {}
    for pool in registry.pools():
        if pool.adapter != "ort":
            continue
        try:
            loaded = loaded_models(client, pool)
            serves = set(pool.models) if pool.models else set(models)
            actions = decide(
                loaded,
                {m: t for m, t in used.items() if m in serves},
                now.timestamp(),
                keep_alive_s,
                pinned & serves,
            )
            apply(client, pool, actions)
            plan[pool.id] = actions
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("warm: pool %s skipped: %s", pool.id, exc)
    return plan


def run_forever(
    registry: Registry,
    stop: threading.Event,
    *,
    interval_s: float = 30.0,
    keep_alive_s: float = 600.0,
    pinned: frozenset[str] = frozenset(),
) -> None:
    with httpx.Client(timeout=60.0, follow_redirects=False) as client:
        while not stop.is_set():
            try:
                run_once(registry, client, keep_alive_s=keep_alive_s, pinned=pinned)
            except Exception as exc:  # the warm loop must never take anything down
                log.warning("warm: run failed: %s", exc)
            stop.wait(interval_s)
