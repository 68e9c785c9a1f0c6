"""Replication: what a write costs when it reaches every site, and how long a sync takes.

For each kind of replica (local directories; S3 buckets on a moto server started here,
standing for another cloud's object store), and for 0, 1 and 2 replicas, times
`--writes` registry writes (one pool document each) through the primary: with replicas,
a write returns once every replica has it, so its latency is the replication lag of the
store (a router then sees it at its next refresh). Then times a full sync of a replica
that missed `--writes` documents and the demo model push (blobs, manifest, index).

    python benchmarks/replication.py [--writes 200] [--no-s3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from mpfn.artifacts import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.replication import ReplicatedStore, sync_replica
from mpfn.store import LocalStore, Store
from mpfn.store.s3 import S3Store

S3_OPTIONS = {"region": "us-east-1", "connect_timeout": 2.0, "read_timeout": 5.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def pool(i: int) -> Pool:
    return Pool(id=f"p{i}", cloud="local", endpoint=f"http://p{i}.invalid:8000")  # type: ignore[arg-type]


def time_writes(store: Store, n: int) -> np.ndarray:
    registry = Registry(store)
    out = []
    for i in range(n):
        started = time.perf_counter()
        registry.put_pool(pool(i))
        out.append((time.perf_counter() - started) * 1000)
    return np.array(out)


def push_demo(store: Store, root: Path) -> float:
    path = root / "demo.onnx"
    path.write_bytes(build_demo_model())
    started = time.perf_counter()
    ref = push_model(store, path, name="demo", version="1")
    Registry(store).add_model(demo_model_version(ref))
    return (time.perf_counter() - started) * 1000


def run(kind: str, make: Callable[[str], Store], writes: int, root: Path) -> None:
    for replicas in (0, 1, 2):
        primary = LocalStore(root / f"{kind}-primary-{replicas}")
        sites = {f"s{i}": make(f"{kind}-{replicas}-s{i}") for i in range(replicas)}
        store: Store = ReplicatedStore(primary, sites) if sites else primary
        ms = time_writes(store, writes)
        push = push_demo(store, root)
        print(
            f"  {kind:<6} {replicas} replica(s): write p50 {np.percentile(ms, 50):7.2f} ms"
            f"  p99 {np.percentile(ms, 99):7.2f} ms   demo model push {push:7.1f} ms"
        )
    away = make(f"{kind}-away")
    started = time.perf_counter()
    report = sync_replica(primary, away, "away")
    seconds = time.perf_counter() - started
    print(
        f"  {kind:<6} sync of a replica that missed everything: {report.copied} keys "
        f"in {seconds:.2f} s ({report.copied / seconds:,.0f} keys/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    print(f"registry writes through the primary (local directory), {args.writes} per row")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run("local", lambda name: LocalStore(root / name), args.writes, root)
        if not args.no_s3:
            with moto() as endpoint:

                def bucket(name: str) -> Store:
                    store = S3Store(name, "mpfn", endpoint_url=endpoint, **S3_OPTIONS)  # type: ignore[arg-type]
                    store.client.create_bucket(Bucket=name)
                    return store

                run("s3", bucket, args.writes, root)


if __name__ == "__main__":
    main()
