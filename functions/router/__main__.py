"""`python -m mpfn.functions.router`: the router on uvicorn (uvloop + httptools), the
container entry point. Listens on `--port`, else `$PORT` (Cloud Run sets it), else 8080;
the state comes from `MPFN_STATE`, tunables from `MPFN_ROUTER_*`."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mpfn.functions.router")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(env.get("PORT") or 8080))
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    args = parse_args(argv, os.environ)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
