"""Overload: goodput, latency and shedding at and past the concurrency that saturates a stack.

Starts the demo stack (`mpfn up`: two ORT worker pools, one router) unless `--url` names
a running router, then, for each concurrency, runs that many keep-alive clients posting
the demo infer request for `--seconds`, and prints one row per concurrency: requests,
200s, 503/429s, goodput (200s per second), p50/p99 of the answered requests, p99 of the
refused ones as the client saw them, the share of sheds the router itself answered
within 5 ms of their arrival (from its own latency histogram: the client's figure also
holds the time a request waits for a busy router process and client to run), how many
refusals the router held to their connection's `Retry-After`, whether any circuit
breaker of the router opened, and how much of a core the load generator itself took (on
a machine it shares with the stack, that is taken from the stack). After each level it
checks that the first request once the burst is over is served.

Clients either ignore `Retry-After` and send their next request at once (`--retry-after
ignore`, a closed loop at full tilt) or wait as it says before their next request
(`honor`, what the openai and tritonclient SDKs' retries do: `retry-after-ms` when the
answer has one, as the openai SDK reads it, else `Retry-After`; `seconds`: only
`Retry-After`, whole seconds); `both` runs ignore and honor, `all` all three. The
clients are `loadgen`'s lean raw-protocol connections (`--client lean`, the default),
which cost a few times less per request than keep-alive aiohttp clients (`--client
aiohttp`; `both` runs each kind against the same stack).
`--slow-pools MS` runs, instead of the demo stack, two workers that each run at most two
inferences at a time, each MS ms longer (a sleep), behind one router: there the pools
saturate while the router process has room, as when routers scale out beside their
pools. `--pin` puts the router and the load generator on one CPU and the workers on the others
(`cpupin`), so that the router does not wait for the scheduler behind the workers.
Targets are checked against the `--saturation` level of the same run.

    python benchmarks/overload.py [--levels 32,64,128,256,512] [--saturation 64]
        [--seconds 10] [--retry-after honor|seconds|ignore|both|all[,...]]
        [--client lean|aiohttp|both]
        [--pin] [--slow-pools MS] [--url http://router]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpupin
import loadgen

PATH = "/v2/models/demo/infer"
BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
).encode()
HEADERS = {"content-type": "application/json"}


@dataclass
class Level:
    concurrency: int
    seconds: float
    honor: bool = False  # clients wait as `Retry-After` says
    stop: float = 0.0  # the `perf_counter` time the level ends
    ok_ms: list[float] = field(default_factory=list)
    refused_ms: list[float] = field(default_factory=list)
    refused_without_retry_after: int = 0
    other: int = 0

    @property
    def requests(self) -> int:
        return len(self.ok_ms) + len(self.refused_ms) + self.other

    @property
    def goodput(self) -> float:
        return len(self.ok_ms) / self.seconds

    def p(self, q: float, refused: bool = False) -> float:
        values = self.refused_ms if refused else self.ok_ms
        return float(np.percentile(values, q)) if values else float("nan")

    def record(self, status: int, ms: float, retry_after: str | None) -> float:
        """Count one answer; the seconds its client waits before its next request."""
        if status == 200:
            self.ok_ms.append(ms)
        elif status in (429, 503):
            self.refused_ms.append(ms)
            if retry_after is None:
                self.refused_without_retry_after += 1
            elif self.honor:
                return max(0.0, min(float(retry_after), self.stop - time.perf_counter()))
        else:
            self.other += 1
        return 0.0

    def error(self) -> None:
        self.other += 1


async def drive_lean(url: str, concurrency: int, seconds: float, mode: str) -> Level:
    """The level with `loadgen`'s lean clients (what the table reports by default)."""
    level = Level(concurrency, seconds, mode != "ignore", time.perf_counter() + seconds)
    request = loadgen.request_bytes(url, PATH, BODY, HEADERS["content-type"])
    await loadgen.closed_loop(
        url, request, concurrency, seconds, level.record, level.error,
        whole_seconds=mode == "seconds",
    )  # fmt: skip
    return level


async def drive(url: str, concurrency: int, seconds: float, mode: str) -> Level:
    """The level with keep-alive aiohttp clients (`--client aiohttp`)."""
    level = Level(concurrency, seconds, mode != "ignore", time.perf_counter() + seconds)
    ms_header = None if mode == "seconds" else "retry-after-ms"
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            while time.perf_counter() < level.stop:
                started = time.perf_counter()
                try:
                    async with session.post(url + PATH, data=BODY, headers=HEADERS) as resp:
                        await resp.read()
                        status, retry_after = (
                            resp.status,
                            loadgen.retry_after_s(
                                resp.headers.get("retry-after"),
                                resp.headers.get(ms_header) if ms_header else None,
                            ),
                        )
                except (aiohttp.ClientError, TimeoutError):
                    level.error()
                    continue
                wait = level.record(status, (time.perf_counter() - started) * 1000.0, retry_after)
                if wait > 0:
                    await asyncio.sleep(wait)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return level


async def probe(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + PATH, data=BODY, headers=HEADERS) as resp:
            status = resp.status
        async with session.get(url + "/metrics") as resp:
            metrics = await resp.text()
    return status, metrics


SHED_BUCKET = "mpfn_router_request_seconds_bucket{"
SHED_LABELS = 'model="demo",pool="none",status="5xx"'


def shed_buckets(metrics: str) -> dict[str, float]:
    """The router's own histogram of requests no pool answered (sheds): le -> count."""
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith(SHED_BUCKET) and SHED_LABELS in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    return out


def within_5ms(before: dict[str, float], after: dict[str, float]) -> float:
    """Share of this level's sheds the router answered within 5 ms of their arrival."""
    total = after.get("+Inf", 0.0) - before.get("+Inf", 0.0)
    fast = after.get("0.005", 0.0) - before.get("0.005", 0.0)
    return fast / total if total else float("nan")


def held_refusals(metrics: str) -> float:
    """Refusals the router held to their connection's last `Retry-After` so far."""
    for line in metrics.splitlines():
        if line.startswith("mpfn_router_held_refusals_total "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def circuits_opened(metrics: str) -> list[str]:
    """Pools whose breaker is not closed, from the router's `/metrics`."""
    out = []
    for line in metrics.splitlines():
        if line.startswith("mpfn_router_circuit_state{") and not line.endswith(" 0.0"):
            out.append(line.split('"')[1])
    return out


@contextmanager
def demo_stack(pinned: bool = False, router_processes: int = 1) -> Iterator[str]:
    """`mpfn up --port 0` in a throw-away directory; yields the router URL. `pinned`: the
    router and this process on one CPU, the workers on the others (`cpupin`);
    `router_processes`: `mpfn up --router-processes`."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mpfn",
                "up",
                "--port",
                "0",
                "--state",
                f"{tmp}/state",
                "--router-processes",
                str(router_processes),
            ],
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if k != "MPFN_STATE"},
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("router: "):
                    url = line.split(" ", 1)[1].strip()
                    break
            else:
                raise RuntimeError("mpfn up exited before printing the router URL")
            if pinned:
                print(cpupin.pin_stack(proc.pid), flush=True)
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


DRIVERS = {"lean": drive_lean, "aiohttp": drive}
MODES = {
    "ignore": "clients ignore Retry-After",
    "honor": "clients honor retry-after-ms, else Retry-After",
    "seconds": "clients honor Retry-After (whole seconds only)",
}


@contextmanager
def slow_pools_stack(delay_ms: float) -> Iterator[str]:
    """Two ORT workers that each run at most 2 inferences at a time, each taking
    `delay_ms` more (`--inject-delay-ms`, a sleep: it costs no CPU), behind one router:
    the pools, not the router process, are what saturates. Yields the router URL."""
    from pydantic import HttpUrl
    from router_overhead import READY, demo_store, free_port, router_argv, server, worker_argv

    from mpfn.demo import build_demo_model
    from mpfn.documents import Pool
    from mpfn.store import LocalStore

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        model = Path(tmp) / "demo.onnx"
        model.write_bytes(build_demo_model())
        docs = demo_store(LocalStore(Path(tmp) / "state"), model)
        state = docs.store.url
        for name in ("slow-1", "slow-2"):
            port = free_port()
            limits = ["--max-concurrency", "2", "--max-queue", "4"]
            delay = ["--inject-delay-ms", str(delay_ms)]
            argv = worker_argv(state, port, Path(tmp) / f"cache-{name}", *limits, *delay)
            stack.enter_context(server(argv, port, READY, {}))
            endpoint = HttpUrl(f"http://127.0.0.1:{port}")
            pool = Pool(id=name, cloud="local", endpoint=endpoint, capacity=2)
            docs.upsert(pool.key, pool)
        port = free_port()
        router = server(router_argv(port), port, READY, {"MPFN_STATE": state})
        yield "http://" + stack.enter_context(router)


def run(
    url: str, levels: list[int], seconds: float, mode: str, saturation: int, client: str
) -> None:
    print(f"\n{MODES[mode]}; {client} clients; {seconds:g} s per level; router {url}")
    print(
        f"{'conc':>5} {'requests':>9} {'200':>8} {'503/429':>8} {'goodput/s':>10} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'refused p99':>11} {'shed<=5ms':>9} {'held':>7} "
        f"{'circuits':>9} {'after':>6} {'client cpu':>10}"
    )
    results: dict[int, Level] = {}
    _, metrics = asyncio.run(probe(url))
    for concurrency in levels:
        before, held = shed_buckets(metrics), held_refusals(metrics)
        cpu = time.process_time()
        level = asyncio.run(DRIVERS[client](url, concurrency, seconds, mode))
        client_cpu = (time.process_time() - cpu) / seconds  # of one core
        status, metrics = asyncio.run(probe(url))
        opened = circuits_opened(metrics)
        results[concurrency] = level
        print(
            f"{concurrency:>5} {level.requests:>9,} {len(level.ok_ms):>8,} "
            f"{len(level.refused_ms):>8,} {level.goodput:>10,.0f} {level.p(50):>7.2f} "
            f"{level.p(99):>7.2f} {level.p(99, refused=True):>11.2f} "
            f"{within_5ms(before, shed_buckets(metrics)):>9.1%} "
            f"{held_refusals(metrics) - held:>7,.0f} "
            f"{(','.join(opened) or 'closed'):>9} {status:>6} {client_cpu:>10.0%}",
            flush=True,
        )
        if level.refused_without_retry_after or level.other:
            print(f"      {level.refused_without_retry_after} refusals without Retry-After, "
                  f"{level.other} other answers or errors")  # fmt: skip
        time.sleep(1.0)  # let the routers' limits and the workers settle between levels
    base = results.get(saturation)
    if base is None:
        return
    print(f"targets against concurrency {saturation} ({base.goodput:,.0f}/s, "
          f"p99 {base.p(99):.2f} ms):")  # fmt: skip
    for concurrency, level in results.items():
        if concurrency <= saturation:
            continue
        ratio = level.goodput / base.goodput
        p99_ratio = level.p(99) / base.p(99)
        print(f"  {concurrency:>4}: goodput {ratio:6.1%} (>= 90%), p99 {p99_ratio:4.2f}x (<= 2x), "
              f"refused p99 {level.p(99, refused=True):.2f} ms (< 5 ms)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="32,64,128,256,512")
    parser.add_argument("--saturation", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--retry-after",
        default="both",
        help="honor, seconds, ignore, both (ignore,honor) or all; several, comma-separated, "
        "run in that order against the same stack",
    )
    parser.add_argument("--url", default=None, help="a running router (default: mpfn up)")
    parser.add_argument(
        "--client",
        choices=["lean", "aiohttp", "both"],
        default="lean",
        help="lean raw-protocol clients (benchmarks/loadgen.py) or aiohttp ones",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="router and load generator on the first CPU, workers on the others (cpupin.py)",
    )
    parser.add_argument(
        "--slow-pools",
        type=float,
        default=0.0,
        metavar="MS",
        help="instead of mpfn up: two workers running at most 2 inferences at a time, each "
        "MS ms longer, so that the pools and not the router saturate",
    )
    parser.add_argument(
        "--router-processes",
        type=int,
        default=1,
        metavar="N",
        help="mpfn up --router-processes N: the router's port served by N processes",
    )
    args = parser.parse_args()
    if args.router_processes != 1 and (args.url or args.slow_pools):
        parser.error("--router-processes applies to the mpfn up stack: leave out --url")
    if args.pin and (args.url or args.slow_pools):
        parser.error("--pin pins the stack this script starts: leave out --url")
    levels = [int(v) for v in args.levels.split(",")]
    groups = {"both": ["ignore", "honor"], "all": list(MODES)}
    modes = [m for part in args.retry_after.split(",") for m in groups.get(part, [part])]
    if unknown := sorted(set(modes) - set(MODES)):
        parser.error(f"--retry-after: unknown mode {', '.join(unknown)}")
    if args.url:
        stack = contextmanager(lambda: iter([args.url]))()
    elif args.slow_pools:
        stack = slow_pools_stack(args.slow_pools)
    else:
        stack = demo_stack(args.pin, args.router_processes)
    with stack as url:
        for client in ["lean", "aiohttp"] if args.client == "both" else [args.client]:
            for mode in modes:
                run(url.rstrip("/"), levels, args.seconds, mode, args.saturation, client)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
