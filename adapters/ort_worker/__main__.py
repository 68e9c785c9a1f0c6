"""`python -m mpfn.adapters.ort_worker`: run the worker on uvicorn (uvloop + httptools), and
its gRPC service on grpc.aio in the same event loop with `--grpc-port`."""

from __future__ import annotations

import importlib.util
import logging
import signal
import sys
from types import FrameType
from typing import Any

import uvicorn

from mpfn.adapters.ort_worker.guard import exposure_warning
from mpfn.adapters.ort_worker.options import build_app, parse_args
from mpfn.adapters.ort_worker.providers import NoProvider
from mpfn.adapters.ort_worker.tlsserve import uvicorn_tls


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful shutdown; a finished drain exits 0."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if sig == signal.SIGTERM and isinstance(captured, list) and sig in captured:
            captured.remove(sig)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    warning = exposure_warning(config.host, config.admin_token is not None)
    if warning:
        logging.getLogger("mpfn.worker").warning("%s", warning)
    try:
        app = build_app(config)
    except (NoProvider, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asgi: Any = app
    if config.grpc_port:  # the gRPC service starts and stops with the app's lifespan
        from mpfn.adapters.ort_worker.grpc_server import WithGrpc, server_credentials

        tls = server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
        asgi = WithGrpc(app, config.host, config.grpc_port, tls)
    server = _Server(
        uvicorn.Config(
            asgi,
            host=config.host,
            port=config.port,
            loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
            http="httptools" if importlib.util.find_spec("httptools") else "h11",
            lifespan="on",
            access_log=False,
            log_level=config.log_level,
            timeout_graceful_shutdown=30,
            **uvicorn_tls(config.tls_cert, config.tls_key, config.tls_client_ca),
        )
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
