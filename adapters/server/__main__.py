"""`python -m mpfn.adapters.server --kind KIND --backend URL --port P`: run an adapter
server on uvicorn (uvloop + httptools when installed)."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Sequence

import uvicorn

from mpfn.adapters.base import AdapterError
from mpfn.adapters.ort_worker.guard import exposure_warning
from mpfn.adapters.ort_worker.tlsserve import uvicorn_tls
from mpfn.adapters.registry import UnknownAdapter
from mpfn.adapters.server.options import build_server, parse_args


def main(argv: Sequence[str] | None = None, *, kind: str | None = None) -> int:
    """Parse the flags (`kind` fixes `--kind`), build the server and run it until stopped."""
    config = parse_args(argv, kind=kind)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    warning = exposure_warning(config.host, config.admin_token is not None)
    if warning:
        logging.getLogger("mpfn.adapter_server").warning("%s", warning)
    try:
        app = build_server(config)
    except (UnknownAdapter, AdapterError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = uvicorn.Server(
        uvicorn.Config(
            app,
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
