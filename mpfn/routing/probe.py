"""Probe pools and turn what they answer into `stats/<pool>.json` snapshots.

`mpfn stats refresh` and every warmer run call `refresh_stats`: for every pool it
checks health, asks which registered model versions are loaded, and times a few real
requests (a zero-filled v2 infer of each loaded model whose inputs are known; the model
list of OpenAI-compatible pools), then writes one `PoolStatsDocument` per pool. New
router instances start from these snapshots instead of priors; running routers pick up
changed ones on their next refresh. A pool that does not answer gets a snapshot with
error rate 1, so routers rank it last until they see it answer. Every HTTP call goes
through one injectable `httpx.AsyncClient`, or a pool's own (its credentials and TLS, from
`clients`); `snapshot_document` is pure.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from mpfn.documents import ModelVersion, Pool
from mpfn.routing import PoolStatsDocument, read_load, speaks
from mpfn.routing.serving import Protocol, backend_url, infer_path, pool_serves
from mpfn.routing.snapshot import Snapshot
from mpfn.routing.statsdoc import LatencyAverage
from mpfn.state import Documents
from mpfn.store.base import Store

ZERO = {"BOOL": False, "BYTES": None}


def probe_body(mv: ModelVersion) -> bytes | None:
    """A JSON v2 infer request of zeros for `mv` (batch 1 for `-1` dimensions); None when
    its inputs are unknown or not numeric."""
    if not mv.inputs or any(t.datatype == "BYTES" for t in mv.inputs):
        return None
    inputs = []
    for t in mv.inputs:
        shape = [1 if d < 0 else d for d in t.shape]
        size = 1
        for d in shape:
            size *= d
        if size > 1_000_000:
            return None
        value = ZERO.get(t.datatype, 0)
        inputs.append(
            {"name": t.name, "datatype": t.datatype, "shape": shape, "data": [value] * size}
        )
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


@dataclass
class ProbeResult:
    """What probing one pool found. Times in ms; `loaded` is None when unknown."""

    pool: str
    timings: list[float] = field(default_factory=list)
    models: dict[str, list[float]] = field(default_factory=dict)
    loaded: list[str] | None = None
    requests: int = 0
    errors: int = 0
    last_error: str | None = None
    load: tuple[int, int] | None = None

    def failed(self, error: str) -> None:
        self.requests += 1
        self.errors += 1
        self.last_error = error[:500]


def snapshot_document(result: ProbeResult, now: float) -> PoolStatsDocument:
    """The `stats/<pool>.json` document for one probe (pure)."""
    model_ms = [ms for samples in result.models.values() for ms in samples]
    overall = model_ms or result.timings
    latency = (
        LatencyAverage(ms=statistics.median(overall), at=now, samples=len(overall))
        if overall
        else None
    )
    models = {
        ref: LatencyAverage(ms=statistics.median(samples), at=now, samples=len(samples))
        for ref, samples in sorted(result.models.items())
        if samples
    }
    return PoolStatsDocument(
        pool=result.pool,
        written_at=now,
        latency=latency,
        models=models,
        inflight=result.load[0] if result.load else 0,
        queued=result.load[1] if result.load else 0,
        reported_at=now if result.load else None,
        requests=result.requests,
        errors=result.errors,
        last_error=result.last_error,
        last_error_at=now if result.last_error else None,
        loaded=None if result.loaded is None else sorted(result.loaded),
        error_rate=result.errors / result.requests if result.requests else 0.0,
        observed_at=now if result.requests else None,
    )


async def _timed(
    client: httpx.AsyncClient, result: ProbeResult, method: str, url: str, body: bytes | None
) -> tuple[httpx.Response, float] | None:
    """One timed call; None (and counted as an error) on a connection error or a 5xx."""
    started = time.perf_counter()
    try:
        response = await client.request(method, url, content=body)
    except httpx.HTTPError as exc:
        result.failed(f"{method} {url}: {type(exc).__name__}: {exc}")
        return None
    ms = (time.perf_counter() - started) * 1000.0
    load = read_load(response.headers)
    if load is not None:
        result.load = load
    if response.status_code >= 500:
        result.failed(f"{method} {url}: HTTP {response.status_code}")
        return None
    result.requests += 1
    return response, ms


async def probe_pool(
    client: httpx.AsyncClient, pool: Pool, models: Sequence[ModelVersion], samples: int
) -> ProbeResult:
    """Health, loaded models and timed requests of one pool."""
    result = ProbeResult(pool.id)
    if speaks(pool.adapter, "openai"):
        for _ in range(samples):
            listed = await _timed(client, result, "GET", backend_url(pool, "/v1/models"), None)
            if listed is None:
                return result
            result.timings.append(listed[1])
            try:
                data = listed[0].json().get("data", [])
            except (ValueError, AttributeError):
                data = []
            ids = [m.get("id") for m in data if isinstance(m, dict)]
            result.loaded = sorted(str(i) for i in ids if i)
        return result
    health = await _timed(client, result, "GET", backend_url(pool, "/v2/health/ready"), None)
    if health is None:
        return result
    if health[0].status_code != 200:
        result.failed(f"not ready: HTTP {health[0].status_code}")
        return result
    result.timings.append(health[1])
    loaded: list[str] = []
    for mv in models:
        path = f"/v2/models/{mv.name}/versions/{mv.version}/ready"
        ready = await _timed(client, result, "GET", backend_url(pool, path), None)
        if ready is None or ready[0].status_code != 200:
            continue
        ref = f"{mv.name}/{mv.version}"
        loaded.append(ref)
        body = probe_body(mv)
        if body is None:
            continue
        url = backend_url(pool, infer_path(mv.name, mv.version))
        for _ in range(samples):
            answer = await _timed(client, result, "POST", url, body)
            if answer is not None and answer[0].status_code == 200:
                result.models.setdefault(ref, []).append(answer[1])
    result.loaded = loaded
    return result


def models_of(snapshot: Snapshot, pool: Pool) -> list[ModelVersion]:
    """The registered model versions `pool` may serve (what to ask it about)."""
    protocol: Protocol = "openai" if speaks(pool.adapter, "openai") else "v2"
    return [
        mv
        for name, versions in sorted(snapshot.models.items())
        for _, mv in sorted(versions.items())
        if pool_serves(pool, name, mv.format, protocol)
    ]


async def refresh_stats(
    store: Store,
    snapshot: Snapshot,
    *,
    pools: Sequence[str] = (),
    samples: int = 3,
    client: httpx.AsyncClient | None = None,
    timeout_s: float = 5.0,
    clock: Callable[[], float] = time.time,
    clients: Mapping[str, httpx.AsyncClient] | None = None,
) -> list[PoolStatsDocument]:
    """Probe `pools` (all when empty) concurrently and write their snapshots; a pool in
    `clients` is probed with its own client.

    Raises LookupError for a pool id that is not registered.
    """
    own_clients = clients or {}
    chosen = list(snapshot.pools)
    if pools:
        known = {p.id: p for p in snapshot.pools}
        missing = [p for p in pools if p not in known]
        if missing:
            raise LookupError(f"no pool {missing[0]!r}")
        chosen = [known[p] for p in pools]
    own = client is None
    http = client or httpx.AsyncClient(timeout=timeout_s)
    try:
        results = await asyncio.gather(
            *(
                probe_pool(own_clients.get(p.id, http), p, models_of(snapshot, p), samples)
                for p in chosen
            )
        )
    finally:
        if own:
            await http.aclose()
    now = clock()
    docs = [snapshot_document(r, now) for r in results]
    writer = Documents(store)
    for doc in docs:
        await asyncio.to_thread(writer.upsert, doc.key, doc)
    return docs
