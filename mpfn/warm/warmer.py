"""One warmer run: usage -> forecast per model -> desired replicas per pool -> load/unload.

The run is stateless; it reads everything from the store and the pools and writes back:

1. read models (latest version of each), pools, policies and `config/warmer.json`;
2. per model, read usage (`UsageReader`) and forecast it (`FitStore`: cached Prophet fit,
   refit on a cadence; the profile estimator for short histories);
3. ask every pool's adapter what it holds (concurrently);
4. decide (`mpfn.warm.desired`, pure): warm or not, replicas per pool, actions;
5. apply the actions through the adapters, one pool at a time each, pools concurrently;
6. write the forecast reports and `plans/warm.json`.

`apply=False` (`mpfn warm plan`) stops after step 4 and writes nothing: no rollups, fits,
reports or plan. A model whose usage cannot be read, a pool that cannot be reached or an
action that fails is recorded in the plan and the run goes on; only an unreadable registry
(store down) fails the run. Nothing here is on the routing path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from mpfn.adapters.base import Adapter, ArtifactSource
from mpfn.artifacts.cache import fetch_cached
from mpfn.documents import ModelVersion, Policy, Pool
from mpfn.poolauth.present import CredentialError, PoolCredentials, needs_keys
from mpfn.registry import Registry, latest_version
from mpfn.replication.catchup import catch_up
from mpfn.replication.fanout import ReplicatedStore
from mpfn.routing import BreakerConfig, Limits
from mpfn.routing.filter import exclusion_reason
from mpfn.scaling import ScalerClients
from mpfn.state import Documents
from mpfn.store import Store, StoreError
from mpfn.warm.apply import (
    AdapterSource,
    Secured,
    adapter_source,
    apply_actions,
    held,
    one_line,
    secure_pool,
)
from mpfn.warm.desired import (
    ModelSignal,
    PoolView,
    desired_state,
    expected_from_forecast,
    expected_from_recent,
    plan_actions,
    request_probability,
    warm_decision,
)
from mpfn.warm.fits import FitStore, ModelForecast
from mpfn.warm.plan import (
    PLAN_KEY,
    SETTINGS_KEY,
    ModelWarmth,
    PoolState,
    Reason,
    WarmAction,
    WarmPlan,
    WarmSettings,
)
from mpfn.warm.report import update_report
from mpfn.warm.sizing import apply_sizes, pool_needs, read_sizes
from mpfn.warm.usage import UsageHistory, UsageReader

log = logging.getLogger("mpfn.warm")

#: Where the warmer keeps model files it uploads to Triton and TorchServe pools.
CACHE_DIR_ENV = "MPFN_CACHE_DIR"
ARTIFACT_MEMORY_FACTOR = 3.0  # resident memory per artifact byte, as the ORT worker assumes


def load_settings(store: Store, **overrides: Any) -> WarmSettings:
    """`config/warmer.json` (defaults when absent) with `overrides` applied and validated."""
    base = Documents(store).find(SETTINGS_KEY, WarmSettings) or WarmSettings()
    if not overrides:
        return base
    return WarmSettings.model_validate({**base.model_dump(), **overrides})


def memory_mb(doc: ModelVersion) -> float:
    if doc.memory_mb > 0:
        return doc.memory_mb
    size = doc.artifact.size if doc.artifact else 0
    return size * ARTIFACT_MEMORY_FACTOR / (1024 * 1024)


def latest_models(docs: list[ModelVersion]) -> dict[str, ModelVersion]:
    by_name: dict[str, dict[str, ModelVersion]] = {}
    for doc in docs:
        by_name.setdefault(doc.name, {})[doc.version] = doc
    out: dict[str, ModelVersion] = {}
    for name, versions in by_name.items():
        latest = latest_version(versions)
        if latest is not None:
            out[name] = versions[latest]
    return out


def serves(
    pool: Pool, models: Mapping[str, ModelVersion], policies: Mapping[str, Policy]
) -> frozenset[str]:
    """Models `pool` may hold: the routing filter's rules, with the model's policy limits."""
    out = set()
    for name, doc in models.items():
        policy = policies.get(name) or policies.get("default")
        limits = (
            Limits(policy.name, clouds=policy.allowed_clouds, regions=policy.allowed_regions)
            if policy
            else Limits()
        )
        if exclusion_reason(doc, pool, limits, None, 0.0, BreakerConfig()) is None:
            out.add(name)
    return frozenset(out)


@dataclass
class _Model:
    doc: ModelVersion
    history: UsageHistory | None = None
    forecast: ModelForecast | None = None
    error: str | None = None


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


async def run_warmer(
    store: Store,
    *,
    settings: WarmSettings | None = None,
    adapters: AdapterSource | None = None,
    now: float | None = None,
    apply: bool = True,
    site: str | None = None,
    scalers: ScalerClients | None = None,
) -> WarmPlan:
    """One run (see the module docstring); returns the plan it applied or would apply.
    With `site`, only that site's pools (and pools of no site) are warmed and probed: each
    site's warmer looks after its own pools."""
    started = time.perf_counter()
    now = time.time() if now is None else now
    settings = settings or load_settings(store)
    registry = Registry(store)
    models = latest_models(registry.models())
    pools = sorted(
        (p for p in registry.pools() if site is None or p.site in (None, site)),
        key=lambda p: p.id,
    )
    policies = {p.name: p for p in registry.policies()}
    errors: list[str] = []
    if apply and isinstance(store, ReplicatedStore):  # usage from every site, lagging sites
        errors += catch_up(store)

    reader = UsageReader(store, seal_after_s=settings.seal_after_s, write_rollups=apply)
    fits = FitStore(
        store, refit_every_s=settings.refit_every_s, use_prophet=settings.use_prophet, write=apply
    )
    state = {name: _forecast(reader, fits, doc, now, settings) for name, doc in models.items()}
    errors += [f"model {n}: {m.error}" for n, m in state.items() if m.error]

    stats_errors: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        credentials = PoolCredentials()  # one per run: warming and probing share the keys
        stack.push_async_callback(credentials.aclose)
        source = adapters
        secure_errors: dict[str, str] = {}
        if scalers is None:
            scale_http = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
            scalers = ScalerClients(http=scale_http)
        sizes = await read_sizes(pools, scalers)
        asleep = {pid for pid, size in sizes.items() if size == 0}
        if source is None:
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=300.0))
            secured = await _secure(pools, stack, secure_errors, credentials)
            source = adapter_source(client, secured=secured, artifacts=artifact_source(store))
        made = [
            (pool, secure_errors[pool.id]) if pool.id in secure_errors else _make(source, pool)
            for pool in pools
        ]
        latest = {name: doc.version for name, doc in models.items()}
        views = await asyncio.gather(
            *(_view(p, a, latest, models, policies, p.id in asleep) for p, a in made)
        )
        pool_errors = {v.pool.id: e for v, e in views if e}
        signals = [_signal(m, now, settings) for m in state.values()]
        warm: dict[str, bool] = {}
        reasons: dict[str, Reason] = {}
        for s in signals:
            anywhere = any(s.model in (v.loaded or {}) for v, _ in views)
            warm[s.model], reasons[s.model] = warm_decision(s, anywhere, settings)
        pool_views = [v for v, _ in views]
        desired = desired_state(signals, warm, pool_views, settings)
        actions = plan_actions(signals, desired, pool_views)
        if apply:
            awake = [(p, a) for p, a in made if p.id not in asleep]
            done = await _apply(awake, actions, models)
            actions = done + [a for a in actions if a.pool in asleep]  # after they start
        resized = await apply_sizes(
            store, pools, sizes, pool_needs(desired),
            now=now, apply=apply, clients=scalers, settings=settings,
        )  # fmt: skip
        for _, adapter in made:
            if isinstance(adapter, str):
                continue
            try:
                await adapter.aclose()
            except Exception as exc:
                log.debug("closing an adapter failed: %s", exc)
        if apply and settings.refresh_stats and adapters is None:
            stats_errors = await _refresh_stats(store, pools, credentials)
    errors += [f"pool {pid}: {e}" for pid, e in sorted(pool_errors.items())]
    errors += [
        f"pool {a.pool}: {a.action} {a.model}:{a.version}: {a.error}"
        for a in actions
        if a.status == "failed"
    ]
    errors += [f"size of pool {a.pool}: {a.error}" for a in resized if a.error]
    errors += stats_errors
    if apply:
        _write_reports(store, state, now, settings, errors)
    plan = WarmPlan(
        generated_at=_utc(now),
        applied=apply,
        duration_s=0.0,
        settings=settings,
        models=[_warmth(m, s, warm, reasons) for m, s in zip(state.values(), signals, strict=True)],
        pools=[_pool_state(v, desired, pool_errors.get(v.pool.id)) for v in pool_views],
        actions=actions,
        sizes=resized,
        fits_done=fits.fits_done,
        errors=errors,
    )
    plan = plan.model_copy(update={"duration_s": time.perf_counter() - started})
    if apply:
        try:
            Documents(store).upsert(PLAN_KEY, plan)
        except StoreError as exc:
            plan = plan.model_copy(update={"errors": [*plan.errors, f"writing the plan: {exc}"]})
    return plan


def artifact_source(store: Store) -> ArtifactSource:
    """Verified local copies of `store`'s model files, cached in `$MPFN_CACHE_DIR` (default:
    the temporary directory, the one writable place in a Lambda function or a read-only
    container), for adapters that upload models to their backend."""
    cache = os.environ.get(CACHE_DIR_ENV) or os.path.join(tempfile.gettempdir(), "mpfn-warmer")
    return functools.partial(fetch_cached, store, cache_dir=Path(cache))


def run_once(store: Store, **kwargs: Any) -> WarmPlan:
    """`run_warmer` from synchronous code (CLI, Lambda, the local loop)."""
    return asyncio.run(run_warmer(store, **kwargs))


# -- steps ----------------------------------------------------------------------------------


def _forecast(
    reader: UsageReader, fits: FitStore, doc: ModelVersion, now: float, settings: WarmSettings
) -> _Model:
    try:
        history = reader.history(
            doc.name,
            now,
            days=settings.history_days,
            minute_span_s=max(settings.keep_alive_s, settings.recent_s),
            recent_s=settings.recent_s,
        )
        forecast = fits.forecast(history, now, settings.horizon_hours)
    except StoreError as exc:
        return _Model(doc, error=f"usage or fit unreadable: {one_line(exc)}")
    return _Model(doc, history, forecast, forecast.error)


async def _secure(
    pools: Sequence[Pool],
    stack: contextlib.AsyncExitStack,
    errors: dict[str, str],
    credentials: PoolCredentials,
) -> dict[str, Secured]:
    """Credentials and TLS clients of the pools that have `auth` or `tls`; a pool whose
    credentials cannot be had gets its reason in `errors` (never a secret)."""
    wanted = [p for p in pools if needs_keys(p)]
    if not wanted:
        return {}
    out: dict[str, Secured] = {}
    for pool in wanted:
        try:
            out[pool.id] = secured = await secure_pool(pool, credentials)
        except CredentialError as exc:
            errors[pool.id] = str(exc)
            continue
        if secured.client is not None:
            stack.push_async_callback(secured.client.aclose)
    return out


async def _refresh_stats(
    store: Store, pools: Sequence[Pool], credentials: PoolCredentials
) -> list[str]:
    """Probe every pool (with its credentials) and write `stats/`: routers starting now,
    and `mpfn route explain`, begin from what the pools answer today. Pools signed per
    request (SigV4) are left to the routers' own observations."""
    from mpfn.routing.probe import refresh_stats
    from mpfn.routing.snapshot import SnapshotLoader

    errors: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, httpx.AsyncClient] = {}
        probed: list[str] = []
        for pool in pools:
            if needs_keys(pool):
                try:
                    keys = await credentials.keys(pool)
                except CredentialError as exc:
                    errors.append(f"stats of pool {pool.id}: {exc}")
                    continue
                if keys.sign is not None:
                    continue
                client = httpx.AsyncClient(
                    timeout=5.0, headers=dict(keys.headers), verify=keys.ssl or True
                )
                stack.push_async_callback(client.aclose)
                clients[pool.id] = client
            probed.append(pool.id)
        try:
            if probed:
                snapshot = await asyncio.to_thread(SnapshotLoader(store).load)
                await refresh_stats(store, snapshot, pools=probed, samples=1, clients=clients)
        except (StoreError, LookupError) as exc:
            errors.append(f"refreshing stats/: {one_line(exc)}")
    return errors


def _signal(m: _Model, now: float, settings: WarmSettings) -> ModelSignal:
    expected = 0.0
    recent_use = False
    if m.history is not None and m.forecast is not None:
        expected = max(
            expected_from_forecast(m.forecast.forecast, now, settings.window_s),
            expected_from_recent(m.history.recent, settings.recent_s, settings.window_s),
        )
        last = m.history.last_used
        recent_use = last is not None and now - last <= settings.keep_alive_s
    return ModelSignal(
        model=m.doc.name,
        version=m.doc.version,
        expected=expected,
        recent_use=recent_use,
        pinned=m.doc.name in settings.pinned,
        memory_mb=memory_mb(m.doc),
    )


def _make(source: AdapterSource, pool: Pool) -> tuple[Pool, Adapter | str]:
    """The pool's adapter, or the one-line reason it has none."""
    try:
        return pool, source(pool)
    except Exception as exc:
        return pool, one_line(exc)


async def _view(
    pool: Pool,
    adapter: Adapter | str,
    latest: Mapping[str, str],
    models: Mapping[str, ModelVersion],
    policies: Mapping[str, Policy],
    asleep: bool = False,
) -> tuple[PoolView, str | None]:
    eligible = serves(pool, models, policies)
    if asleep:  # at zero replicas: nothing loaded, nothing to ask
        return PoolView(pool, {}, eligible), None
    if isinstance(adapter, str):
        return PoolView(pool, None, eligible), adapter
    try:
        return PoolView(pool, await held(adapter, latest), eligible), None
    except Exception as exc:  # unreachable or broken: plan around it
        return PoolView(pool, None, eligible), one_line(exc)


async def _apply(
    made: list[tuple[Pool, Adapter | str]],
    actions: list[WarmAction],
    models: Mapping[str, ModelVersion],
) -> list[WarmAction]:
    documents = {(d.name, d.version): d for d in models.values()}
    jobs = []
    for pool, adapter in made:
        mine = [a for a in actions if a.pool == pool.id]
        if mine and not isinstance(adapter, str):
            jobs.append(apply_actions(adapter, mine, documents))
    results = await asyncio.gather(*jobs)
    return [a for batch in results for a in batch]


def _write_reports(
    store: Store, state: Mapping[str, _Model], now: float, settings: WarmSettings, errors: list[str]
) -> None:
    docs = Documents(store)
    for name, m in state.items():
        if m.forecast is None or m.forecast.method == "none":
            continue
        try:
            update_report(
                docs, name, m.forecast.forecast, m.forecast.method, now, settings.report_days
            )
        except StoreError as exc:
            errors.append(f"model {name}: report not written: {one_line(exc)}")


def _warmth(
    m: _Model, s: ModelSignal, warm: Mapping[str, bool], reasons: Mapping[str, Reason]
) -> ModelWarmth:
    f, h = m.forecast, m.history
    return ModelWarmth(
        model=m.doc.name,
        version=m.doc.version,
        method=f.method if f else "none",
        fitted_at=_utc(f.fitted_at) if f and f.fitted_at else None,
        refit=bool(f and f.refit),
        history_hours=h.hours if h else 0,
        forecast_start=_utc(f.forecast.start) if f else None,
        yhat=round(float(f.forecast.yhat[0]), 4) if f and len(f.forecast.yhat) else 0.0,
        upper=round(float(f.forecast.upper[0]), 4) if f and len(f.forecast.upper) else 0.0,
        current=h.current if h else 0,
        recent=h.recent if h else 0,
        last_used=_utc(h.last_used) if h and h.last_used else None,
        expected=round(s.expected, 4),
        probability=round(request_probability(s.expected), 4),
        warm=warm[s.model],
        reason=reasons[s.model],
        error=m.error,
    )


def _pool_state(
    view: PoolView, desired: Mapping[tuple[str, str], int], error: str | None
) -> PoolState:
    loaded = sorted(f"{m}:{v}" for m, vs in (view.loaded or {}).items() for v in vs)
    wanted = {m: n for (m, p), n in sorted(desired.items()) if p == view.pool.id and n > 0}
    return PoolState(
        pool=view.pool.id, adapter=view.pool.adapter, loaded=loaded, desired=wanted, error=error
    )
