"""Routing policy quality: mpfn's scheduler vs round-robin, random and least-loaded.

Replays the arrival times of the Azure LLM inference trace (conversation, 2023;
`/work/shared/data/traces/azure-llm-2023-conv.csv`, or `--trace`), compressed in time by
`--speedup` and cut at `--duration` seconds, open loop (each request is sent at its
arrival time, whatever the previous ones are doing), against three local ORT worker
pools that differ on purpose:

- `slow`:      cheap ($0.5/h) but every inference takes `--slow-ms` longer;
- `expensive`: fast, $40/h;
- `flaky`:     fast and cheap ($1/h) but answers `--flaky-rate` of inferences with 503.

One router process per strategy (`MPFN_ROUTER_STRATEGY`), fresh feedback each time, the
same workers and policy (`slo-then-cost`, SLO `--slo-ms`). `mpfn-cost` is mpfn's
scheduler with `MPFN_ROUTER_MAX_ERROR_RATE=1`, i.e. flaky pools are not put last.
Reported per strategy: p50/p99 latency as the client saw it, SLO attainment (answered
within the SLO), cost (USD per 1k requests: the answering pool's price x the request's
latency / capacity), requests that needed a failover, and failed requests. Writes a PNG
plot and prints the table as Markdown.

    pip install '.[bench]'
    python benchmarks/routing_policies.py [--duration 60] [--speedup 10] \\
        [--plot docs/img/routing_policies.png]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
import numpy as np
from pydantic import HttpUrl

from mpfn.artifacts.models import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import Policy, Pool
from mpfn.state import Documents
from mpfn.store import LocalStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_overhead import BODY, PATH, free_port, router_argv, server

TRACE = Path("/work/shared/data/traces/azure-llm-2023-conv.csv")
STRATEGIES = ("mpfn", "mpfn-cost", "round-robin", "random", "least-loaded")
# `mpfn-cost`: mpfn's scheduler with flaky pools ranked by cost like any other
# (MPFN_ROUTER_MAX_ERROR_RATE=1): failures then only count through failover and breakers.
VARIANTS = {"mpfn-cost": ("mpfn", {"MPFN_ROUTER_MAX_ERROR_RATE": "1"})}
CAPACITY = 2  # each worker runs two inferences at once (its default --max-concurrency)


@dataclass(frozen=True)
class PoolSpec:
    id: str
    cost_per_hour: float
    flags: tuple[str, ...]


def arrivals(path: Path, speedup: float, duration: float) -> list[float]:
    """Seconds from the start of the trace, divided by `speedup`, up to `duration`."""
    times = []
    with path.open() as fh:
        for row in csv.DictReader(fh):
            whole, _, frac = row["TIMESTAMP"].partition(".")
            t = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").timestamp()
            times.append(t + float("0." + (frac or "0")))
    times.sort()
    start = times[0]
    out = [(t - start) / speedup for t in times]
    return [t for t in out if t < duration]


@dataclass
class Answer:
    latency_ms: float
    status: int
    pool: str
    retried: bool


async def replay(url: str, offsets: list[float], timeout_s: float) -> list[Answer]:
    """Send one request per offset at that time after the start (open loop)."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.5

        async def one(offset: float) -> Answer:
            await asyncio.sleep(max(0.0, start + offset - loop.time()))
            t0 = time.perf_counter()
            try:
                async with session.post(url + PATH, data=BODY) as resp:
                    await resp.read()
                    reason = resp.headers.get("x-mpfn-route-reason", "")
                    return Answer(
                        (time.perf_counter() - t0) * 1000,
                        resp.status,
                        resp.headers.get("x-mpfn-pool", "none"),
                        "; attempt " in reason,
                    )
            except (aiohttp.ClientError, TimeoutError):
                return Answer((time.perf_counter() - t0) * 1000, 0, "none", False)

        return list(await asyncio.gather(*(one(o) for o in offsets)))


@dataclass(frozen=True)
class Summary:
    strategy: str
    requests: int
    p50: float
    p99: float
    slo: float
    cost_per_1k: float
    retried: float
    failed: int
    shares: dict[str, float]


def summarize(
    strategy: str, answers: list[Answer], prices: dict[str, float], slo_ms: float
) -> Summary:
    ok = [a for a in answers if a.status == 200]
    lat = np.array([a.latency_ms for a in ok]) if ok else np.array([np.nan])
    cost = sum(prices[a.pool] * a.latency_ms / 3_600_000 / CAPACITY for a in ok)
    n = len(answers)
    return Summary(
        strategy=strategy,
        requests=n,
        p50=float(np.percentile(lat, 50)),
        p99=float(np.percentile(lat, 99)),
        slo=sum(a.latency_ms <= slo_ms for a in ok) / n,
        cost_per_1k=cost / n * 1000,
        retried=sum(a.retried for a in ok) / n,
        failed=n - len(ok),
        shares={p: sum(a.pool == p for a in ok) / n for p in prices},
    )


def markdown(rows: list[Summary], slo_ms: float) -> str:
    pools = list(rows[0].shares)
    head = (
        f"| strategy | p50 ms | p99 ms | within {slo_ms:g} ms SLO | $ per 1k | failed over "
        f"| failed | " + " | ".join(f"share {p}" for p in pools) + " |"
    )
    lines = [head, "|" + "---|" * (7 + len(pools))]
    for r in rows:
        lines.append(
            f"| {r.strategy} | {r.p50:.1f} | {r.p99:.1f} | {r.slo:.1%} | {r.cost_per_1k:.5f} "
            f"| {r.retried:.1%} | {r.failed} | "
            + " | ".join(f"{r.shares[p]:.0%}" for p in pools)
            + " |"
        )
    return "\n".join(lines)


def plot(rows: list[Summary], slo_ms: float, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.strategy for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    x = np.arange(len(rows))
    axes[0].bar(x - 0.2, [r.p50 for r in rows], 0.4, label="p50")
    axes[0].bar(x + 0.2, [r.p99 for r in rows], 0.4, label="p99")
    axes[0].axhline(slo_ms, color="k", linestyle="--", linewidth=1, label="SLO")
    axes[0].set_ylabel("latency (ms)")
    axes[0].legend(fontsize=8)
    axes[1].bar(x, [100 * r.slo for r in rows], color="tab:green")
    axes[1].set_ylabel(f"% within {slo_ms:g} ms")
    axes[1].set_ylim(0, 100)
    axes[2].bar(x, [r.cost_per_1k * 1000 for r in rows], color="tab:red")
    axes[2].set_ylabel("cost (m$ per 1k requests)")
    axes[3].bar(x, [100 * r.retried for r in rows], color="tab:purple", label="failed over")
    axes[3].bar(x, [100 * r.failed / r.requests for r in rows], color="k", label="failed")
    axes[3].set_ylabel("% of requests")
    axes[3].legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(x, names, rotation=20, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def worker_argv(store: LocalStore, tmp: Path, port: int, spec: PoolSpec) -> list[str]:
    return [
        sys.executable, "-m", "mpfn.adapters.ort_worker", "--host", "127.0.0.1",
        "--port", str(port), "--state", store.url, "--preload", "demo",
        "--cache-dir", str(tmp / f"cache-{spec.id}"), "--intra-op-threads", "1",
        "--max-concurrency", str(CAPACITY), *spec.flags,
    ]  # fmt: skip


def start_pools(
    stack: ExitStack, store: LocalStore, tmp: Path, specs: list[PoolSpec]
) -> Iterator[Pool]:
    docs = Documents(store)
    for spec in specs:
        port = free_port()
        stack.enter_context(
            server(worker_argv(store, tmp, port, spec), port, "/v2/models/demo/ready", {})
        )
        pool = Pool(
            id=spec.id,
            cloud="local",
            endpoint=HttpUrl(f"http://127.0.0.1:{port}"),
            cost_per_hour=spec.cost_per_hour,
            capacity=CAPACITY,
        )
        docs.upsert(pool.key, pool)
        yield pool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trace", type=Path, default=TRACE)
    parser.add_argument("--speedup", type=float, default=10.0, help="time compression")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds replayed")
    parser.add_argument("--slo-ms", type=float, default=25.0)
    parser.add_argument("--slow-ms", type=float, default=40.0)
    parser.add_argument("--flaky-rate", type=float, default=0.3)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--plot", type=Path, default=Path("docs/img/routing_policies.png"))
    args = parser.parse_args()

    offsets = arrivals(args.trace, args.speedup, args.duration)
    specs = [
        PoolSpec("slow", 0.5, ("--inject-delay-ms", str(args.slow_ms))),
        PoolSpec("expensive", 40.0, ()),
        PoolSpec("flaky", 1.0, ("--inject-error-rate", str(args.flaky_rate),
                                "--inject-seed", "7")),
    ]  # fmt: skip
    prices = {s.id: s.cost_per_hour for s in specs}
    rows: list[Summary] = []
    with tempfile.TemporaryDirectory() as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        store = LocalStore(tmp / "state")
        model = tmp / "demo.onnx"
        model.write_bytes(build_demo_model())
        doc = demo_model_version(push_model(store, model, name="demo", version="1"))
        docs = Documents(store)
        docs.upsert(doc.key, doc)
        docs.upsert(
            "policies/default.json",
            Policy(name="default", latency_slo_ms=args.slo_ms, timeout_ms=5000),
        )
        list(start_pools(stack, store, tmp, specs))
        print(f"{len(offsets)} requests over {args.duration:g} s "
              f"({len(offsets) / args.duration:.1f} req/s, trace x{args.speedup:g})",
              flush=True)  # fmt: skip
        for strategy in args.strategies.split(","):
            port = free_port()
            name, extra = VARIANTS.get(strategy, (strategy, {}))
            env = {"MPFN_STATE": store.url, "MPFN_ROUTER_STRATEGY": name,
                   "MPFN_ROUTER_SEED": "1", **extra}  # fmt: skip
            with server(router_argv(port), port, "/v2/models/demo/ready", env) as url:
                answers = asyncio.run(replay(f"http://{url}", offsets, 10.0))
            row = summarize(strategy, answers, prices, args.slo_ms)
            rows.append(row)
            print(f"  {strategy:<13} p50 {row.p50:6.1f} ms  p99 {row.p99:6.1f} ms  "
                  f"SLO {row.slo:6.1%}  ${row.cost_per_1k:.5f}/1k  failed over "
                  f"{row.retried:5.1%}  failed {row.failed}", flush=True)  # fmt: skip
    print()
    print(markdown(rows, args.slo_ms))
    title = (
        f"{len(offsets)} requests, Azure LLM conv trace x{args.speedup:g} "
        f"({len(offsets) / args.duration:.0f} req/s); pools: slow (+{args.slow_ms:g} ms, $0.5/h), "
        f"expensive ($40/h), flaky ({args.flaky_rate:.0%} errors, $1/h)"
    )
    plot(rows, args.slo_ms, args.plot, title)
    print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
