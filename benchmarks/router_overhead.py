"""Router overhead: client->worker vs client->proxy->worker vs client->router->worker.

Starts one ORT worker, a bare forwarding proxy and one router (both on uvicorn) on
loopback over a throw-away local store holding the demo model, then sends the same JSON
v2 infer request directly, through the proxy and through the router, interleaved on
keep-alive connections (the order rotates every request), and prints p50/p99 of each
path, what each adds to the direct path and the router's added cost as a multiple of the
proxy's. The bare proxy (`BareProxy`) is the floor for any Python ASGI hop: one pooled
aiohttp session like the router's, the body read and forwarded, the answer relayed with
its headers; no routing, limits, metrics or usage. Then it measures requests/s at
saturation with a few concurrent clients, one path after the other. The whole
measurement is repeated `--rounds` times and the medians over rounds are reported, since
a shared machine is noisy.

`--baseline-src DIR` also starts a second router from another source tree (for example
an older checkout's `mpfn/` extracted into DIR) on the same worker, measured in the same
interleaved rounds, to compare two versions of the router on equal terms;
`--baseline-env NAME=VALUE` starts it with other settings instead (or as well).
`--tls` also runs a second router whose pool is a worker on HTTPS (private CA, client
certificate) requiring a bearer token, the credentials held by reference: TLS + token vs
plain in the same rounds.
`--router-image REF` also runs the router from that image (`mpfn build router`) as a
podman container on the host network, measured in the same rounds: container vs process.

    python benchmarks/router_overhead.py [--requests 2000] [--rounds 5] [--concurrency 8]
        [--baseline-src /tmp/mpfn-before [--baseline-factory mpfn.router:create_app]]
        [--baseline-env MPFN_ROUTER_ADMISSION=off] [--router-image localhost/mpfn-router:TAG]
        [--tls] [--http auto|httptools|h11] [--no-proxy]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from pydantic import HttpUrl

from mpfn.artifacts.models import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import Pool
from mpfn.state import Documents
from mpfn.store import LocalStore

BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.25] * 16}]}
).encode()
PATH = "/v2/models/demo/infer"


READY = "/v2/models/demo/ready"


def demo_store(store: LocalStore, model: Path) -> Documents:
    """Puts the ONNX file `model` in `store` as the demo model (version 1); returns the
    store's documents."""
    docs = Documents(store)
    doc = demo_model_version(push_model(store, model, name="demo", version="1"))
    docs.upsert(doc.key, doc)
    return docs


def worker_argv(state: str, port: int, cache: Path, *extra: str) -> list[str]:
    """The command line of an ORT worker on loopback `port` preloading the demo model."""
    return [sys.executable, "-m", "mpfn.adapters.ort_worker", "--host", "127.0.0.1",
            "--port", str(port), "--state", state, "--preload", "demo",
            "--cache-dir", str(cache), *extra]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(
    argv: list[str],
    port: int,
    ready: str,
    env: dict[str, str],
    cwd: Path | None = None,
    connect: Callable[[str], http.client.HTTPConnection] | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[str]:
    proc = subprocess.Popen(
        argv,
        cwd=cwd,  # `python -m` puts the working directory first on sys.path
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(argv[:4])} exited with {proc.returncode}")
            try:
                conn = (connect or (lambda u: http.client.HTTPConnection(u, timeout=2)))(url)
                conn.request("GET", ready, headers=headers or {})
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{' '.join(argv[:4])} did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@contextmanager
def container_server(image: str, port: int, ready: str, state: Path) -> Iterator[str]:
    """The router image as a container on the host network, the state mounted."""
    from mpfn.containers import ContainerSpec, find_runtime, run

    spec = ContainerSpec(
        name=f"mpfn-bench-router-{port}",
        image=image,
        args=("--host", "127.0.0.1", "--port", str(port)),
        env={"MPFN_STATE": f"file://{state}"},
        volumes=((str(state), str(state)),),
        user=f"{os.getuid()}:{os.getgid()}",
    )
    container = run(spec, find_runtime())
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection(f"127.0.0.1:{port}", timeout=2)
                conn.request("GET", ready)
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or not container.running():
                raise RuntimeError(f"router container not ready:\n{container.logs()}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        container.stop()


@contextmanager
def tls_site(tmp: Path, model: Path, ready: str) -> Iterator[str]:
    """A second state with the same model, a worker on HTTPS requiring a token and a
    client certificate, and a router holding the pool's credentials by reference."""
    from mpfn.poolauth.ca import CA

    root = tmp / "tls"
    docs = demo_store(LocalStore(root / "state"), model)
    ca = CA(root / "pki")
    server_cert, client = ca.issue("server"), ca.issue("router", server=False)
    token = root / "token"
    token.write_text("bench-token\n")
    wport = free_port()
    argv = worker_argv(docs.store.url, wport, root / "cache", "--token-file", str(token),
                       "--tls-cert", str(server_cert.cert), "--tls-key", str(server_cert.key),
                       "--tls-client-ca", str(ca.pem))  # fmt: skip
    pool = Pool.model_validate({
        "id": "w-tls", "cloud": "local", "endpoint": f"https://127.0.0.1:{wport}",
        "auth": {"type": "bearer", "token": f"file:{token}"},
        "tls": {"ca": f"file:{ca.pem}", "cert": f"file:{client.cert}", "key": f"file:{client.key}"},
    })  # fmt: skip
    docs.upsert(pool.key, pool)
    context = ssl.create_default_context(cafile=ca.pem)
    context.load_cert_chain(client.cert, client.key)

    def connect(url: str) -> http.client.HTTPConnection:
        return http.client.HTTPSConnection(url, timeout=2, context=context)

    auth = {"Authorization": "Bearer bench-token"}
    with server(argv, wport, ready, {}, connect=connect, headers=auth):
        rport = free_port()
        with server(router_argv(rport), rport, ready, {"MPFN_STATE": docs.store.url}) as url:
            yield url


# Hop-by-hop response headers and those the proxy sets itself (as the router does).
HOP_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server"}
)
FORWARDED = frozenset({b"content-type", b"content-encoding", b"inference-header-content-length"})


class BareProxy:
    """A bare ASGI forwarding proxy to `upstream`: the request body read and sent with
    one pooled aiohttp session, the answer's status, headers and body relayed."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.session is not None:
                        await self.session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if self.session is None:  # the router's session settings
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30.0),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
            )
        headers = {k.decode("latin-1"): v.decode("latin-1")
                   for k, v in scope["headers"] if k in FORWARDED}  # fmt: skip
        async with self.session.request(
            scope["method"], self.upstream + scope["path"], data=b"".join(chunks),
            headers=headers, allow_redirects=False,
        ) as resp:  # fmt: skip
            payload = await resp.read()
            out = [(k.lower(), v) for k, v in resp.raw_headers if k.lower() not in HOP_HEADERS]
            out.append((b"content-length", str(len(payload)).encode()))
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            await send({"type": "http.response.body", "body": payload})


def bare_proxy() -> BareProxy:
    """The `uvicorn --factory` entry point: the proxy to `$BARE_PROXY_UPSTREAM`."""
    return BareProxy(os.environ["BARE_PROXY_UPSTREAM"])


def infer_once(conn: http.client.HTTPConnection) -> float:
    start = time.perf_counter()
    conn.request("POST", PATH, body=BODY, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    elapsed = time.perf_counter() - start
    if resp.status != 200:
        raise RuntimeError(f"infer answered {resp.status}")
    return elapsed


def latency(urls: dict[str, str], n: int) -> dict[str, np.ndarray]:
    """`n` samples per path, interleaved; the order of paths rotates every request."""
    conns = {name: http.client.HTTPConnection(url) for name, url in urls.items()}
    names = list(urls)
    for _ in range(100):  # warm up every path
        for name in names:
            infer_once(conns[name])
    out = {name: np.empty(n) for name in names}
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            out[name][i] = infer_once(conns[name]) * 1000
    for conn in conns.values():
        conn.close()
    return out


async def saturate(url: str, total: int, concurrency: int) -> float:
    """Answered requests per second with `concurrency` closed-loop clients sending `total`
    requests. A router may shed some (503 + Retry-After: more clients than its pool's
    limit, `docs/router.md`, Overload); those are left out of the rate and reported on
    stderr, and the client sends its next request at once."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        remaining = total
        shed = 0

        async def worker() -> None:
            nonlocal remaining, shed
            while remaining > 0:
                remaining -= 1
                async with session.post(f"http://{url}{PATH}", data=BODY) as resp:
                    await resp.read()
                    if resp.status == 503 and "Retry-After" in resp.headers:
                        shed += 1
                    elif resp.status != 200:
                        raise RuntimeError(f"infer answered {resp.status}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if shed:
            print(f"  ({url}: {shed} of {total} shed at capacity)", file=sys.stderr)
        return (total - shed) / (time.perf_counter() - start)


def router_argv(port: int, factory: str | None = None, http: str = "auto") -> list[str]:
    app = ["--factory", factory] if factory else ["mpfn.functions.router.app:app"]
    return [
        sys.executable, "-m", "uvicorn", *app, "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning", "--http", http,
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="latency samples per path")
    parser.add_argument("--saturation-requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument(
        "--baseline-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="run the baseline router (this tree's, unless --baseline-src) with this variable",
    )
    parser.add_argument(
        "--baseline-factory",
        default="mpfn.functions.router.asgi:create_app",
        help="the baseline's app factory (before the router moved: mpfn.router:create_app)",
    )
    parser.add_argument("--router-image", help="also run the router from this image")
    parser.add_argument(
        "--http",
        choices=("auto", "httptools", "h11"),
        default="auto",
        help="uvicorn's HTTP parser for the proxy and the routers (auto: httptools if installed)",
    )
    parser.add_argument("--no-proxy", action="store_true", help="leave out the bare proxy")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="also a router whose pool is a worker on HTTPS (private CA, client certificate) "
        "requiring a bearer token, its credentials held by reference",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        model = Path(tmp) / "demo.onnx"
        model.write_bytes(build_demo_model())
        store = LocalStore(Path(tmp) / "state")
        docs = demo_store(store, model)
        wport = free_port()
        argv = worker_argv(store.url, wport, Path(tmp) / "cache")
        pool = Pool(id="w", cloud="local", endpoint=HttpUrl(f"http://127.0.0.1:{wport}"))
        docs.upsert(pool.key, pool)
        ready = READY
        env = {"MPFN_STATE": store.url}
        urls = {"direct to worker": stack.enter_context(server(argv, wport, ready, {}))}
        if not args.no_proxy:
            pport = free_port()
            penv = {"BARE_PROXY_UPSTREAM": f"http://127.0.0.1:{wport}"}
            urls["bare proxy"] = stack.enter_context(
                server(router_argv(pport, "router_overhead:bare_proxy", args.http), pport,
                       ready, penv, Path(__file__).resolve().parent)
            )  # fmt: skip
        rport = free_port()
        urls["through router"] = stack.enter_context(
            server(router_argv(rport, http=args.http), rport, ready, env)
        )
        if args.baseline_src is not None or args.baseline_env:
            bport = free_port()
            benv = dict(env, **dict(item.split("=", 1) for item in args.baseline_env))
            if args.baseline_src is not None:
                benv["PYTHONPATH"] = str(args.baseline_src.resolve())
            urls["baseline router"] = stack.enter_context(
                server(
                    router_argv(bport, args.baseline_factory, args.http),
                    bport,
                    ready,
                    benv,
                    args.baseline_src,
                )
            )
        if args.tls:
            urls["router, TLS+token"] = stack.enter_context(tls_site(Path(tmp), model, ready))
        if args.router_image:
            cport = free_port()
            urls["router container"] = stack.enter_context(
                container_server(args.router_image, cport, ready, store.root)
            )
        p50s: dict[str, list[float]] = {name: [] for name in urls}
        p99s: dict[str, list[float]] = {name: [] for name in urls}
        rps: dict[str, list[float]] = {name: [] for name in urls}
        names = list(urls)
        for r in range(args.rounds):
            samples = latency(urls, args.requests)
            for name, sample in samples.items():
                p50s[name].append(float(np.percentile(sample, 50)))
                p99s[name].append(float(np.percentile(sample, 99)))
            k = r % len(names)
            for name in names[k:] + names[:k]:
                rps[name].append(asyncio.run(saturate(urls[name], args.saturation_requests,
                                                      args.concurrency)))  # fmt: skip
            print(f"round {r + 1}: " + ", ".join(
                f"{n} p50 {p50s[n][-1]:.3f} ms / {rps[n][-1]:,.0f} req/s" for n in names
            ), flush=True)  # fmt: skip
        report(names, p50s, p99s, rps, args)
    return 0


def report(
    names: list[str],
    p50s: dict[str, list[float]],
    p99s: dict[str, list[float]],
    rps: dict[str, list[float]],
    args: argparse.Namespace,
) -> None:
    """Medians over rounds; what each path adds to the direct one (median over rounds of
    the same round's difference), and that as a multiple of what the bare proxy adds."""
    direct = "direct to worker"

    def added(values: dict[str, list[float]], name: str) -> float:
        return float(np.median(np.subtract(values[name], values[direct])))

    print(f"\nJSON v2 infer, demo model: median of {args.rounds} rounds of "
          f"{args.requests} interleaved requests per path; saturation with "
          f"{args.concurrency} clients x {args.saturation_requests} requests")  # fmt: skip
    print(f"  {'path':<18} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'adds p50':>9} "
          f"{'adds p99':>9} {'x proxy p50':>12} {'x proxy p99':>12}")  # fmt: skip
    proxy = "bare proxy" if "bare proxy" in names else None
    for name in names:
        p50, p99 = float(np.median(p50s[name])), float(np.median(p99s[name]))
        line = f"  {name:<18} {p50:8.3f} {p99:8.3f} {float(np.median(rps[name])):8,.0f}"
        if name != direct:
            add50, add99 = added(p50s, name), added(p99s, name)
            line += f" {add50:9.3f} {add99:9.3f}"
            if proxy is not None and name != proxy:
                base50, base99 = added(p50s, proxy), added(p99s, proxy)
                line += f" {add50 / base50:11.2f}x {add99 / base99:11.2f}x"
        print(line)


if __name__ == "__main__":
    raise SystemExit(main())
