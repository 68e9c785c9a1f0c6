"""Worker configuration: command-line flags -> `WorkerConfig` -> a ready `WorkerApp`.

The state URL is `--state`, else `MPFN_STATE`. The worker listens on 127.0.0.1 unless told
otherwise: a container passes `--host 0.0.0.0` (the image's default command does).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mpfn.adapters.ort_worker.app import Faults, WorkerApp
from mpfn.adapters.ort_worker.batching import BatchDefaults
from mpfn.adapters.ort_worker.guard import (
    ADMIN_TOKEN_ENV,
    AccessGuard,
    AdminGuard,
    TokenFile,
    read_token_file,
)
from mpfn.adapters.ort_worker.inline import DEFAULT_INLINE_MAX_US
from mpfn.adapters.ort_worker.metrics import WorkerMetrics
from mpfn.adapters.ort_worker.providers import (
    DEFAULT_PREFERENCE,
    NoProvider,
    parse_provider_list,
)
from mpfn.adapters.ort_worker.repository import ModelRepository, RepositoryConfig
from mpfn.adapters.ort_worker.tlsserve import add_tls_arguments, check_tls_arguments
from mpfn.store import open_store

_MIB = 1024 * 1024
STATE_ENV = "MPFN_STATE"
#: Environment defaults of the batching flags (the flag wins).
BATCH_ENV = {
    "max_batch_size": "MPFN_WORKER_MAX_BATCH_SIZE",
    "max_queue_delay_us": "MPFN_WORKER_MAX_QUEUE_DELAY_US",
    "batch_latency_target_ms": "MPFN_WORKER_BATCH_LATENCY_TARGET_MS",
}


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    state: str
    host: str = "127.0.0.1"
    port: int = 8081
    grpc_port: int = 0  # 0: no gRPC service
    cache_dir: Path = Path("~/.cache/mpfn/artifacts")
    memory_mb: float = 0.0
    providers: tuple[str, ...] = DEFAULT_PREFERENCE
    max_concurrency: int = 2
    max_queue: int = 64
    max_body_mb: float = 64.0
    preload: tuple[tuple[str, str | None], ...] = ()
    intra_op_threads: int = 0
    inline_max_us: int = DEFAULT_INLINE_MAX_US
    insecure: bool = False
    log_level: str = "warning"
    # Batching of models whose document does not say (`batching.BatchDefaults`); 0/1 = off.
    max_batch_size: int = 0
    max_queue_delay_us: int = 2000
    batch_latency_target_ms: float = 50.0
    # Test and benchmark aids only (see `WorkerApp`): slow down or fail inferences on purpose.
    inject_delay_ms: float = 0.0
    inject_error_rate: float = 0.0
    inject_seed: int | None = None
    # Required on management requests (`/v2/repository/...`) when set; never shown in reprs.
    admin_token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "mpfn" / "artifacts"


def parse_preload(text: str) -> tuple[str, str | None]:
    """`demo:1` -> ("demo", "1"); `demo` -> ("demo", None) for the highest version."""
    name, _, version = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"invalid --preload {text!r}: use NAME[:VERSION]")
    return name, version or None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _providers(text: str) -> tuple[str, ...]:
    try:
        return tuple(parse_provider_list(text))
    except NoProvider as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> WorkerConfig:
    """Flags -> config; the state comes from `--state`, else `MPFN_STATE` in `env`, and the
    admin token from `--admin-token-file`, else `MPFN_WORKER_ADMIN_TOKEN` in `env`
    (`env` defaults to the process environment)."""
    parser = argparse.ArgumentParser(
        prog="python -m mpfn.adapters.ort_worker",
        description="Serve ONNX models from an mpfn state store over the Open Inference "
        "Protocol v2 (REST, and gRPC with --grpc-port).",
    )
    parser.add_argument(
        "--state",
        default=None,
        help=f"state store URL (path, file://, s3://, gs://); default: ${STATE_ENV}",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=0,
        help="also serve the v2 gRPC API (inference.GRPCInferenceService) on this port, "
        "on --host (0 = off)",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="local artifact cache")
    parser.add_argument(
        "--memory-mb", type=float, default=0.0, help="model memory budget in MB (0 = unlimited)"
    )
    parser.add_argument(
        "--providers",
        type=_providers,
        default=DEFAULT_PREFERENCE,
        help="execution provider preference, comma-separated (first available wins)",
    )
    parser.add_argument("--max-concurrency", type=_positive, default=2)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--max-body-mb", type=float, default=64.0)
    parser.add_argument(
        "--preload", type=parse_preload, action="append", default=[], metavar="NAME[:VERSION]"
    )
    parser.add_argument(
        "--intra-op-threads", type=int, default=0, help="threads per inference (0 = ORT default)"
    )
    parser.add_argument(
        "--inline-max-us",
        type=int,
        default=DEFAULT_INLINE_MAX_US,
        metavar="US",
        help="models whose recent runs all took less than this run on the event loop, "
        f"without a thread hand-off (default {DEFAULT_INLINE_MAX_US}; 0 = never)",
    )
    parser.add_argument("--insecure", action="store_true", help="allow plain-HTTP registries")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="file holding the token the management API (/v2/repository/...) requires as "
        f"'Authorization: Bearer <token>'; default: ${ADMIN_TOKEN_ENV}, else no token",
    )
    add_tls_arguments(parser)
    batching = parser.add_argument_group(
        "batching",
        "defaults for models whose document has no `batching` section (see docs/worker.md)",
    )
    batching.add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        help=f"rows run at once (0/1 = off, the default); ${BATCH_ENV['max_batch_size']}",
    )
    batching.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=None,
        help="longest a request waits for batch-mates (default 2000); "
        f"${BATCH_ENV['max_queue_delay_us']}",
    )
    batching.add_argument(
        "--batch-latency-target-ms",
        type=float,
        default=None,
        help="latency target of models whose routing policy sets no latency_slo_ms "
        f"(default 50); ${BATCH_ENV['batch_latency_target_ms']}",
    )
    debug = parser.add_argument_group(
        "test and benchmark aids", "deliberately degrade this worker; never use in production"
    )
    debug.add_argument(
        "--inject-delay-ms", type=float, default=0.0, help="extra time each inference takes"
    )
    debug.add_argument(
        "--inject-error-rate",
        type=float,
        default=0.0,
        help="fraction of inferences answered with 503 instead (0..1)",
    )
    debug.add_argument("--inject-seed", type=int, default=None, help="seed of the error draws")
    args = parser.parse_args(argv)
    check_tls_arguments(parser, args)
    if not 0 <= args.grpc_port <= 65535:
        parser.error("--grpc-port must be a port number (0 = off)")
    if args.max_queue < 0:
        parser.error("--max-queue must be 0 or more")
    if args.inline_max_us < 0:
        parser.error("--inline-max-us must be 0 or more")
    if args.inject_delay_ms < 0 or not 0.0 <= args.inject_error_rate <= 1.0:
        parser.error("--inject-delay-ms must be >= 0 and --inject-error-rate in [0, 1]")
    env = os.environ if env is None else env
    state = args.state or env.get(STATE_ENV, "").strip()
    if not state:
        parser.error(f"no state store: pass --state URL or set {STATE_ENV}")
    admin_token = env.get(ADMIN_TOKEN_ENV, "").strip() or None
    if args.admin_token_file is not None:
        try:
            admin_token = read_token_file(args.admin_token_file)
        except ValueError as exc:
            parser.error(str(exc))
    tuning: dict[str, float] = {}
    for name, variable in BATCH_ENV.items():
        value = getattr(args, name)
        if value is None and env.get(variable, "").strip():
            try:
                value = float(env[variable])
            except ValueError:
                parser.error(f"{variable} must be a number")
        if value is not None:
            if value < 0 or (name == "batch_latency_target_ms" and value == 0):
                parser.error(f"--{name.replace('_', '-')} must be positive")
            tuning[name] = value
    return WorkerConfig(
        state=state,
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        cache_dir=(args.cache_dir or default_cache_dir()).expanduser(),
        memory_mb=args.memory_mb,
        providers=args.providers,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        max_body_mb=args.max_body_mb,
        preload=tuple(args.preload),
        intra_op_threads=args.intra_op_threads,
        inline_max_us=args.inline_max_us,
        insecure=args.insecure,
        log_level=args.log_level,
        inject_delay_ms=args.inject_delay_ms,
        inject_error_rate=args.inject_error_rate,
        inject_seed=args.inject_seed,
        max_batch_size=int(tuning.get("max_batch_size", 0)),
        max_queue_delay_us=int(tuning.get("max_queue_delay_us", 2000)),
        batch_latency_target_ms=tuning.get("batch_latency_target_ms", 50.0),
        admin_token=admin_token,
        token_file=args.token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
    )


def build_app(config: WorkerConfig) -> WorkerApp:
    """Open the store and wire repository, metrics and app together."""
    repository = ModelRepository(
        open_store(config.state),
        RepositoryConfig(
            cache_dir=config.cache_dir,
            budget_mb=config.memory_mb,
            providers=config.providers,
            intra_op_threads=config.intra_op_threads,
            insecure=config.insecure,
            batching=BatchDefaults(
                config.max_batch_size, config.max_queue_delay_us, config.batch_latency_target_ms
            ),
        ),
        WorkerMetrics(),
    )
    return WorkerApp(
        repository,
        max_concurrency=config.max_concurrency,
        max_queue=config.max_queue,
        max_body_bytes=int(config.max_body_mb * _MIB),
        preload=config.preload,
        faults=Faults(config.inject_delay_ms, config.inject_error_rate, config.inject_seed),
        admin=AdminGuard(config.admin_token),
        access=AccessGuard(TokenFile(config.token_file) if config.token_file else None),
        inline_max_us=config.inline_max_us,
    )
