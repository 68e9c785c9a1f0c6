"""ASGI entry point of the router for uvicorn, Cloud Run and other containers.

`uvicorn mpfn.functions.router.app:app`; the state comes from `MPFN_STATE` (or mpfn.yaml),
tunables from `MPFN_ROUTER_*` variables (see `mpfn.functions.router.RouterSettings`).
Unless logging is configured already (`uvicorn --log-config`), mpfn's warnings (one per
answer that is not 2xx) go to stderr with a timestamp.
"""

from __future__ import annotations

import logging

from mpfn.functions.router.asgi import create_app

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to_stderr() -> None:
    """Send the `mpfn` loggers' warnings to stderr when nothing else handles them (uvicorn's
    own configuration covers only its loggers)."""
    logger = logging.getLogger("mpfn")
    if logging.getLogger().handlers or logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)


log_to_stderr()
app = create_app()
