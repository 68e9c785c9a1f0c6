"""`python -m mpfn.functions.router`: the router on uvicorn (uvloop + httptools), the
container entry point. Listens on `--port`, else `$PORT` (Cloud Run sets it), else 8080;
the state comes from `MPFN_STATE`, tunables from `MPFN_ROUTER_*`. With `--grpc-port`
(or `MPFN_ROUTER_GRPC_PORT`) it also serves the v2 gRPC API on that port, on `--host`.
With `--workers N` (N > 1) N processes share the port: each admits its share of every
pool (`MPFN_ROUTER_PROCESSES`), and `/metrics` from any of them covers all (through a
private directory of per-process sockets, `MPFN_ROUTER_METRICS_DIR`, removed at exit)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence

GRPC_PORT_ENV = "MPFN_ROUTER_GRPC_PORT"
PROCESSES_ENV = "MPFN_ROUTER_PROCESSES"
METRICS_DIR_ENV = "MPFN_ROUTER_METRICS_DIR"


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mpfn.functions.router")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(env.get("PORT") or 8080))
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(env.get("WEB_CONCURRENCY") or 1),
        help="processes serving the port (default: $WEB_CONCURRENCY, else 1)",
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=int(env.get(GRPC_PORT_ENV) or 0),
        help=f"also serve the v2 gRPC API on this port, on --host (0 = off); "
        f"default: ${GRPC_PORT_ENV}, else 0",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    args = parse_args(argv, os.environ)
    if args.grpc_port:  # read by RouterSettings in the app (each worker process)
        os.environ[GRPC_PORT_ENV] = str(args.grpc_port)
        os.environ.setdefault("MPFN_ROUTER_GRPC_HOST", args.host)
    shared = None
    if args.workers > 1:  # read by RouterSettings in each process
        shared = tempfile.mkdtemp(prefix="mpfn-router-metrics-")
        os.environ[PROCESSES_ENV] = str(args.workers)
        os.environ[METRICS_DIR_ENV] = shared
    try:
        uvicorn.run(
            "mpfn.functions.router.app:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
            http="httptools" if importlib.util.find_spec("httptools") else "h11",
            access_log=False,
            log_level=args.log_level,
            timeout_graceful_shutdown=20,
        )
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
