"""Sites: what a cross-site request costs, and where requests go with locality on and off.

Two sites on one machine. Site A is the root network namespace: the router
(`MPFN_ROUTER_SITE=a`), worker pool `a-1` and the clients. Site B is a network namespace of
its own, joined to A by a veth pair; its worker pool `b-1` listens on B's loopback behind a
link (`benchmarks/delaylink.py`) on B's end of the veth. The link between the sites gets
`--delay-ms` one way: with netem (`tc qdisc ... netem delay`) when the kernel has it,
otherwise in the link process (`--link auto` picks; `--link proxy` forces the link).
Without root or `ip`, or with `--no-netns`, site B is only a second loopback address
behind the same link. Everything is a real process (ORT workers, the router as deployed:
`python -m mpfn.functions.router`, the link); the namespace, veth and processes are
removed on exit, Ctrl-C and errors included.

(a) Cost of leaving the site. One router; each request names a region (`x-mpfn-region`)
only one pool has: `a-1` (local), `b-0` (site B across the veth, link without delay: what
the namespace hop and the link process cost; proxy mode only) or `b-1` (site B across the
delayed link). Latency p50/p99 of `--requests` sequential requests per pool, interleaved,
and throughput with `--concurrency` clients, one pool after the other. The added ms per
request is the pool's figure minus the local one. `--egress-per-1k` (the router's
`MPFN_ROUTER_CROSS_SITE_COST_PER_1K`) adds that many USD per 1k requests to the modeled
cost of every cross-site request; it changes decisions, never latency, which (b) shows.

(b) Decisions with locality on and off. Both sites serve the demo model; for each row a
fresh router (no observed latencies) gets `--decisions` requests from
`--decision-concurrency` clients without hints: the share that stayed in site A, p50/p99,
and the route reasons seen (numbers replaced by #). Three price settings: free pools (the
cost objective falls back to a latency-weighted spread over all pools); B 10% cheaper per
hour (a pool's cost per request is its price times its latency, so only a B never
observed looks cheaper); and B so much cheaper per hour (`--price-a`, `--price-b`
USD/hour) that it is cheaper per request despite its distance, with and without the
egress setting.

    python benchmarks/sites.py [--delay-ms 20] [--requests 300] [--concurrency 8]
        [--decisions 300] [--egress-per-1k 0.009] [--link auto|netem|proxy] [--no-netns]
        [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import numpy as np

from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.store import LocalStore

# The server launchers the tests use (real processes on loopback), from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers.mpfn_procs import publish_demo, start_worker, worker_argv
from tests.servers.ports import start_on_free_ports, unused_port
from tests.servers.process import PYTHON, Proc, start, stop_process, wait_until

BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.25] * 16}]}
).encode()
PATH = "/v2/models/demo/infer"
LINK = Path(__file__).resolve().parent / "delaylink.py"
NS_PREFIX = "mpfn-bench-sites-"
CAPACITY = 8
WORKER_PORT, SLOW_PORT, FAST_PORT = 8001, 9001, 9002  # inside site B's own namespace


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


# --- site B: a namespace, a veth pair, the link ---------------------------------------


@dataclass
class Network:
    """How site A reaches site B."""

    namespace: str | None  # None: site B is on A's loopback
    host: str  # B's address as A dials it
    mode: str  # netem | proxy
    delay_ms: float
    note: str = ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> None:
    """Namespaces a run killed with SIGKILL left behind (its pid is gone)."""
    listed = sh("ip", "netns", "list", check=False).stdout.split()
    for name in listed:
        pid = name.removeprefix(NS_PREFIX)
        if name.startswith(NS_PREFIX) and pid.isdigit() and not _alive(int(pid)):
            sh("ip", "netns", "del", name, check=False)


def can_use_namespaces() -> str:
    """Empty when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "no `ip` (iproute2)"
    return ""


@contextlib.contextmanager
def namespace_b(delay_ms: float, link: str) -> Iterator[Network]:
    """Site B's namespace, a veth pair to it with addresses, netem if wanted and possible;
    all of it deleted afterwards."""
    pid = os.getpid()
    name = f"{NS_PREFIX}{pid}"
    veth_a, veth_b = f"mpsa{pid}"[:15], f"mpsb{pid}"[:15]
    octet = pid % 250 + 1
    addr_a, addr_b = f"10.213.{octet}.1", f"10.213.{octet}.2"
    remove_stale_namespaces()
    try:
        sh("ip", "netns", "add", name)
        sh("ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b, "netns", name)
        sh("ip", "addr", "add", f"{addr_a}/30", "dev", veth_a)
        sh("ip", "link", "set", veth_a, "up")
        sh("ip", "-n", name, "addr", "add", f"{addr_b}/30", "dev", veth_b)
        sh("ip", "-n", name, "link", "set", veth_b, "up")
        sh("ip", "-n", name, "link", "set", "lo", "up")
        mode, note = "proxy", ""
        if link in ("auto", "netem") and delay_ms > 0:
            if shutil.which("tc") is None:
                note = "no `tc`"
            else:
                delay = ["netem", "delay", f"{delay_ms}ms"]
                tried = sh("tc", "qdisc", "add", "dev", veth_a, "root", *delay, check=False)
                if tried.returncode == 0:
                    sh("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", veth_b, "root",
                       *delay)  # fmt: skip
                    mode = "netem"
                else:
                    note = f"netem unavailable: {tried.stderr.strip()}"
            if link == "netem" and mode != "netem":
                raise RuntimeError(f"--link netem: {note}")
        yield Network(name, addr_b, mode, delay_ms, note)
    finally:
        sh("ip", "link", "del", veth_a, check=False)
        sh("ip", "netns", "del", name, check=False)


def start_in(
    namespace: str | None, argv: Sequence[str], log_dir: Path, name: str, port: int
) -> Proc:
    """`argv` in `namespace` (None: here), in its own process group, logging to a file."""
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as fh:
        popen = subprocess.Popen(
            [*prefix, *argv],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Proc(popen, port, log_path)


def connects(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ready(url: str) -> bool:
    import httpx

    return httpx.get(url, timeout=5.0).status_code == 200


@dataclass
class SiteB:
    procs: list[Proc]
    slow_url: str  # across the delayed link
    fast_url: str | None  # across the link without delay (None: not measurable)


@contextlib.contextmanager
def site_b(net: Network, state: LocalStore, root: Path) -> Iterator[SiteB]:
    """Site B's worker and links; stopped afterwards."""
    logs = root / "logs"
    ns = net.namespace
    if ns:
        worker_port, slow_port, fast_port, listen = WORKER_PORT, SLOW_PORT, FAST_PORT, net.host
    else:
        worker_port, slow_port, fast_port, listen = (
            unused_port(),
            unused_port(),
            unused_port(),
            "127.0.0.1",
        )
    procs: list[Proc] = []
    try:
        argv = worker_argv(state, root / "cache-b-1", worker_port, "--preload", "demo")
        procs.append(start_in(ns, argv, logs, "b-1", worker_port))
        slow_delay = 0.0 if net.mode == "netem" else net.delay_ms
        links = [(slow_port, slow_delay)]
        if net.mode == "proxy":
            links.append((fast_port, 0.0))
        for port, delay in links:
            argv = [PYTHON, str(LINK), "--listen", f"{listen}:{port}",
                    "--target", f"127.0.0.1:{worker_port}", "--delay-ms", str(delay)]  # fmt: skip
            procs.append(start_in(ns, argv, logs, f"link-{port}", port))
        for proc in procs[1:]:
            listening = functools.partial(connects, net.host, proc.port)
            wait_until(listening, 30, proc.log_path.stem, proc)
        slow = f"http://{net.host}:{slow_port}"
        wait_until(lambda: http_ready(f"{slow}/v2/models/demo/ready"), 120, "b-1", procs[0])
        fast = f"http://{net.host}:{fast_port}" if net.mode == "proxy" else None
        yield SiteB(procs, slow, fast)
    finally:
        for proc in reversed(procs):
            stop_process(proc.popen)


# --- pools, routers, clients ----------------------------------------------------------


def pool(pool_id: str, url: str, site: str, region: str, price: float = 0.0) -> Pool:
    return Pool.model_validate({
        "id": pool_id, "cloud": "local", "endpoint": url, "site": site, "region": region,
        "capacity": CAPACITY, "cost_per_hour": price,
    })  # fmt: skip


def set_pools(state: LocalStore, pools: Sequence[Pool]) -> None:
    registry = Registry(state)
    for old in registry.pools():
        if old.id not in {p.id for p in pools}:
            registry.remove_pool(old.id)
    for p in pools:
        registry.put_pool(p)


@contextlib.contextmanager
def router(state: LocalStore, root: Path, name: str, settings: dict[str, str]) -> Iterator[str]:
    """The router of site A as deployed (`python -m mpfn.functions.router`: uvicorn on its
    own port, uvloop + httptools), `settings` by `MPFN_ROUTER_*` field name."""
    env = {
        "MPFN_STATE": state.url,
        **{f"MPFN_ROUTER_{k.upper()}": v for k, v in {"site": "a", **settings}.items()},
    }

    def launch(ports: list[int]) -> Proc:
        argv = [PYTHON, "-m", "mpfn.functions.router", "--port", str(ports[0])]
        ready = f"http://127.0.0.1:{ports[0]}/v2/health/ready"
        return start(argv, port=ports[0], log_dir=root / "logs", name=name, env=env,
                     ready_url=ready)  # fmt: skip

    proc = start_on_free_ports(1, launch)
    try:
        yield proc.url
    finally:
        proc.stop()


@dataclass
class Sample:
    ms: float
    status: int
    pool: str
    reason: str


async def send(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Sample:
    started = time.perf_counter()
    async with session.post(url + PATH, data=BODY, headers=headers) as resp:
        await resp.read()
        ms = (time.perf_counter() - started) * 1000.0
        got = resp.headers
        return Sample(
            ms, resp.status, got.get("x-mpfn-pool", ""), got.get("x-mpfn-route-reason", "")
        )


def session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


HEADERS = {"content-type": "application/json"}


def region(name: str) -> dict[str, str]:
    return {**HEADERS, "x-mpfn-region": name}


async def interleaved(
    url: str, regions: Sequence[str], n: int, warmup: int = 20
) -> dict[str, list[Sample]]:
    """`n` sequential requests per region, the order of regions rotating every round."""
    out: dict[str, list[Sample]] = {r: [] for r in regions}
    async with session(1) as http:
        for _ in range(warmup):
            for r in regions:
                await send(http, url, region(r))
        for i in range(n):
            for r in [*regions[i % len(regions) :], *regions[: i % len(regions)]]:
                out[r].append(await send(http, url, region(r)))
    return out


async def closed_loop(
    url: str, headers: dict[str, str], n: int, concurrency: int
) -> tuple[list[Sample], float]:
    """`n` requests from `concurrency` keep-alive clients; the samples and the seconds taken."""
    samples: list[Sample] = []
    left = [n]
    async with session(concurrency) as http:

        async def client() -> None:
            while left[0] > 0:
                left[0] -= 1
                samples.append(await send(http, url, headers))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return samples, time.perf_counter() - started


def pct(samples: Sequence[Sample], q: float) -> float:
    ok = [s.ms for s in samples if s.status == 200]
    return float(np.percentile(ok, q)) if ok else float("nan")


NUMBER = re.compile(r"(?<![\w-])\$?\d+(\.\d+)?(e-?\d+)?%?")


def reason_kind(reason: str) -> str:
    return NUMBER.sub("#", reason) or "(none)"


def reasons(samples: Sequence[Sample], top: int) -> list[dict[str, Any]]:
    """The `top` most common route reasons with numbers as #: count and the last example."""
    kinds = Counter(reason_kind(x.reason) for x in samples)
    examples = {reason_kind(x.reason): x.reason for x in samples}
    return [{"kind": k, "count": n, "example": examples[k]} for k, n in kinds.most_common(top)]


# --- (a) and (b) ----------------------------------------------------------------------


@dataclass
class Setup:
    state: LocalStore
    root: Path
    a_url: str
    b: SiteB
    net: Network


def measure_cost(s: Setup, args: argparse.Namespace) -> list[dict[str, Any]]:
    pools = [pool("a-1", s.a_url, "a", "a"), pool("b-1", s.b.slow_url, "b", "b")]
    labels = {"a": "local (a-1, site A)", "b": f"cross-site (b-1, {s.net.delay_ms:g} ms one way)"}
    if s.b.fast_url:
        pools.append(pool("b-0", s.b.fast_url, "b", "b-nodelay"))
        labels["b-nodelay"] = "cross-site (b-0, link without delay)"
    set_pools(s.state, pools)
    settings = {"cross_site_cost_per_1k": str(args.egress_per_1k)}
    regions = [p.region for p in pools]
    with router(s.state, s.root, "router-cost", settings) as url:
        lat = asyncio.run(interleaved(url, regions, args.requests))
        rows: list[dict[str, Any]] = []
        for r, p in zip(regions, pools, strict=True):
            samples, seconds = asyncio.run(
                closed_loop(url, region(r), args.requests, args.concurrency)
            )
            served = lat[r] + samples
            rows.append({
                "path": labels[r], "pool": p.id,
                "p50_ms": pct(lat[r], 50), "p99_ms": pct(lat[r], 99),
                "rps": sum(x.status == 200 for x in samples) / seconds,
                "loaded_p50_ms": pct(samples, 50),
                "wrong_pool": sum(x.pool != p.id for x in served),
                "errors": sum(x.status != 200 for x in served),
                "reasons": reasons(lat[r], 2),
                "egress_usd_per_1k": args.egress_per_1k if p.site == "b" else 0.0,
            })  # fmt: skip
    local = rows[0]
    for row in rows:
        row["added_p50_ms"] = row["p50_ms"] - local["p50_ms"]
        row["added_p99_ms"] = row["p99_ms"] - local["p99_ms"]
    return rows


@dataclass
class Config:
    prices: str
    price_a: float
    price_b: float
    locality: bool
    egress: float = 0.0
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = f"locality={'1' if self.locality else '0'}" + (
            f", egress ${self.egress:g}/1k" if self.egress else ""
        )


def measure_decisions(s: Setup, args: argparse.Namespace) -> list[dict[str, Any]]:
    free, cheap = "free pools", f"B cheaper (${args.price_a:g}/h vs ${args.price_b:g}/h)"
    slight = "B 10% cheaper ($1/h vs $0.9/h)"
    configs = [
        Config(free, 0.0, 0.0, False),
        Config(free, 0.0, 0.0, True),
        Config(slight, 1.0, 0.9, False),
        Config(slight, 1.0, 0.9, True),
        Config(cheap, args.price_a, args.price_b, False),
        Config(cheap, args.price_a, args.price_b, True),
        Config(cheap, args.price_a, args.price_b, True, args.egress_per_1k),
    ]
    rows: list[dict[str, Any]] = []
    for i, c in enumerate(configs):
        set_pools(s.state, [pool("a-1", s.a_url, "a", "a", c.price_a),
                            pool("b-1", s.b.slow_url, "b", "b", c.price_b)])  # fmt: skip
        settings = {"locality": "1" if c.locality else "0", "cross_site_cost_per_1k": str(c.egress)}
        with router(s.state, s.root, f"router-decisions-{i}", settings) as url:
            samples, seconds = asyncio.run(
                closed_loop(url, HEADERS, args.decisions, args.decision_concurrency)
            )
        ok = [x for x in samples if x.status == 200]
        rows.append({
            "prices": c.prices, "config": c.label, "requests": len(samples),
            "stayed_in_a": sum(x.pool == "a-1" for x in ok) / max(len(ok), 1),
            "p50_ms": pct(samples, 50), "p99_ms": pct(samples, 99), "rps": len(ok) / seconds,
            "errors": len(samples) - len(ok),
            "reasons": reasons(ok, 3),
        })  # fmt: skip
    return rows


# --- output ---------------------------------------------------------------------------


def print_cost(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n(a) cost of a cross-site request: {args.requests} sequential requests per path "
          f"(interleaved) for p50/p99; {args.requests} from {args.concurrency} clients "
          "for req/s")  # fmt: skip
    print(f"  {'path':<42} {'p50 ms':>7} {'p99 ms':>7} {'+p50 ms':>8} {'+p99 ms':>8} "
          f"{'req/s':>7} {'egress $/1k':>11}")  # fmt: skip
    for r in rows:
        print(f"  {r['path']:<42} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {r['added_p50_ms']:8.2f} "
              f"{r['added_p99_ms']:8.2f} {r['rps']:7.0f} {r['egress_usd_per_1k']:11g}")  # fmt: skip
    for r in rows:
        bad = (
            f"  ({r['wrong_pool']} to another pool, {r['errors']} errors)"
            if r["wrong_pool"] or r["errors"]
            else ""
        )
        print(f"  {r['pool']}: {r['reasons'][0]['example'] if r['reasons'] else '-'}{bad}")


def print_decisions(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n(b) routing decisions: {args.decisions} requests from {args.decision_concurrency} "
          f"clients per row, a fresh router each")  # fmt: skip
    print(f"  {'prices':<30} {'router':<28} {'in A':>6} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>7}")
    for r in rows:
        errors = f"  {r['errors']} errors" if r["errors"] else ""
        print(f"  {r['prices']:<30} {r['config']:<28} {r['stayed_in_a']:6.1%} "
              f"{r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {r['rps']:7.0f}{errors}")  # fmt: skip
        for seen in r["reasons"]:
            print(f"      {seen['count']:4d}x {seen['kind']}")
            print(f"            e.g. {seen['example']}")


# --- main -----------------------------------------------------------------------------


def _exit_on(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the cleanup below


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, default=20.0, help="one way between sites")
    parser.add_argument("--requests", type=int, default=300, help="(a): per path and phase")
    parser.add_argument("--concurrency", type=int, default=8, help="(a): clients for req/s")
    parser.add_argument("--decisions", type=int, default=300, help="(b): requests per row")
    parser.add_argument("--decision-concurrency", type=int, default=4)
    parser.add_argument("--egress-per-1k", type=float, default=0.009, help="USD per 1k")
    parser.add_argument("--price-a", type=float, default=4.0, help="(b): a-1's USD/hour")
    parser.add_argument("--price-b", type=float, default=0.05, help="(b): b-1's USD/hour")
    parser.add_argument("--link", choices=["auto", "netem", "proxy"], default="auto")
    parser.add_argument("--no-netns", action="store_true", help="site B on loopback")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on)

    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mpfn-sites-")))
        why_not = "--no-netns" if args.no_netns else can_use_namespaces()
        if why_not:
            net = Network(None, "127.0.0.1", "proxy", args.delay_ms, f"no namespace: {why_not}")
        else:
            net = stack.enter_context(namespace_b(args.delay_ms, args.link))
        state = LocalStore(root / "state")
        publish_demo(state, root)
        a_worker = start_worker(state, root / "logs", "a-1")
        stack.callback(a_worker.stop)
        b = stack.enter_context(site_b(net, state, root))
        setup = Setup(state, root, a_worker.url, b, net)
        where = f"namespace {net.namespace} at {net.host}" if net.namespace else "loopback"
        link = "netem" if net.mode == "netem" else "link process (benchmarks/delaylink.py)"
        note = f" [{net.note}]" if net.note else ""
        header = f"site B: {where}; {net.delay_ms:g} ms one way by {link}{note}"
        header += f"; {os.cpu_count()} CPUs"
        if not args.json:
            print(header)
        cost = measure_cost(setup, args)
        if not args.json:
            print_cost(cost, args)
        decisions = measure_decisions(setup, args)
        if not args.json:
            print_decisions(decisions, args)
    seconds = time.monotonic() - started
    if args.json:
        print(json.dumps({
            "network": {"namespace": net.namespace is not None, "link": net.mode,
                        "delay_ms_one_way": net.delay_ms, "note": net.note},
            "cpus": os.cpu_count(), "seconds": seconds,
            "cost": cost, "decisions": decisions,
        }, indent=2))  # fmt: skip
    else:
        print(f"\n{seconds:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; site B's namespace and every process are gone")
