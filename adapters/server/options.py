"""Command-line settings of the adapter server, and building the app from them.

`python -m mpfn.adapters.server --kind KIND --backend URL --port P` (and the per-kind
entry points such as `python -m mpfn.adapters.tfserving`, which fix `--kind`). The
adapter is found by kind through the `mpfn.adapters` entry points and configured like a
pool's adapter: `--backend` is the backend's own endpoint (the pool document's `endpoint`
is this server), `--management` its management URL, `--option KEY=VALUE` adapter options
(JSON values), `--credentials-file` a JSON object of credentials. Model documents come
from the registry over `--state` (or `MPFN_STATE`); the repository API takes the same
admin token as the ORT worker (`--admin-token-file` or `MPFN_WORKER_ADMIN_TOKEN`).
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import HttpUrl

from mpfn.adapters.base import AdapterConfig
from mpfn.adapters.ort_worker.guard import (
    ADMIN_TOKEN_ENV,
    AccessGuard,
    AdminGuard,
    TokenFile,
    read_token_file,
)
from mpfn.adapters.ort_worker.tlsserve import add_tls_arguments, check_tls_arguments
from mpfn.adapters.registry import create
from mpfn.adapters.server.app import AdapterServer
from mpfn.adapters.server.catalog import ModelCatalog
from mpfn.artifacts.cache import fetch_cached
from mpfn.documents import Pool
from mpfn.registry import Registry
from mpfn.store import open_store


@dataclass(frozen=True)
class ServerConfig:
    kind: str
    backend: str
    host: str = "127.0.0.1"
    port: int = 8000
    management_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    state: str | None = None
    cache_dir: Path = Path(".mpfn-adapter-cache")
    timeout_s: float = 30.0
    max_concurrency: int = 16
    max_queue: int = 64
    load_on_demand: bool = True
    document_ttl_s: float = 5.0
    admin_token: str | None = field(default=None, repr=False)
    log_level: str = "info"
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None


def _option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return key, raw  # a plain string


def parse_args(argv: Sequence[str] | None = None, *, kind: str | None = None) -> ServerConfig:
    """Settings from the command line; `kind` fixes the adapter kind (no `--kind` flag)."""
    prog = f"python -m mpfn.adapters.{kind or 'server'}"
    parser = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").split("\n\n")[0])
    if kind is None:
        parser.add_argument("--kind", required=True, help="adapter kind (tfserving, ...)")
    parser.add_argument("--backend", required=True, help="the backend's endpoint URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--management", help="the backend's management URL, if separate")
    parser.add_argument("--grpc", help="gRPC address for model control (tfserving: host:8500)")
    parser.add_argument(
        "--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
        help="an adapter option; VALUE is JSON or a plain string (repeatable)",
    )  # fmt: skip
    parser.add_argument("--credentials-file", type=Path, help="JSON object of credentials")
    parser.add_argument("--state", default=os.environ.get("MPFN_STATE"), help="state store URL")
    parser.add_argument("--cache-dir", type=Path, default=Path(".mpfn-adapter-cache"))
    parser.add_argument("--timeout-s", type=float, default=30.0)
    parser.add_argument("--max-concurrency", type=int, default=16)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--no-load-on-demand", action="store_true")
    parser.add_argument("--admin-token-file", type=Path)
    parser.add_argument("--log-level", default="info")
    add_tls_arguments(parser)
    args = parser.parse_args(argv)
    check_tls_arguments(parser, args)
    options = dict(args.option)
    if args.grpc:
        options["grpc_target"] = args.grpc
    credentials: dict[str, str] = {}
    if args.credentials_file:
        loaded = orjson.loads(args.credentials_file.read_bytes())
        if not isinstance(loaded, dict):
            parser.error("--credentials-file must hold a JSON object")
        credentials = {str(k): str(v) for k, v in loaded.items()}
    try:
        token = (
            read_token_file(args.admin_token_file)
            if args.admin_token_file
            else os.environ.get(ADMIN_TOKEN_ENV) or None
        )
    except ValueError as exc:
        parser.error(str(exc))
    return ServerConfig(
        kind=kind or args.kind,
        backend=args.backend,
        host=args.host,
        port=args.port,
        management_url=args.management,
        options=options,
        credentials=credentials,
        state=args.state,
        cache_dir=args.cache_dir,
        timeout_s=args.timeout_s,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        load_on_demand=not args.no_load_on_demand,
        admin_token=token,
        log_level=args.log_level,
        token_file=args.token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
    )


def build_server(config: ServerConfig) -> AdapterServer:
    """The adapter (found by kind) and the ASGI app around it."""
    store = open_store(config.state) if config.state else None
    pool = Pool(
        id="adapter-server", cloud="local", adapter=config.kind, endpoint=HttpUrl(config.backend)
    )
    adapter = create(
        AdapterConfig(
            pool=pool,
            management_url=config.management_url,
            credentials=config.credentials,
            timeout_s=config.timeout_s,
            options=config.options,
            artifacts=None
            if store is None
            else functools.partial(fetch_cached, store, cache_dir=config.cache_dir),
            state_dir=config.cache_dir,
        )
    )
    catalog = ModelCatalog(None if store is None else Registry(store), ttl_s=config.document_ttl_s)
    return AdapterServer(
        adapter,
        catalog,
        max_concurrency=config.max_concurrency,
        max_queue=config.max_queue,
        admin=AdminGuard(config.admin_token),
        access=AccessGuard(TokenFile(config.token_file) if config.token_file else None),
        load_on_demand=config.load_on_demand,
    )
