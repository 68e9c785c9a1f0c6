"""ASGI entry point of the router for uvicorn, Cloud Run and other containers.

`uvicorn mpfn.functions.router.app:app`; the state comes from `MPFN_STATE` (or mpfn.yaml),
tunables from `MPFN_ROUTER_*` variables (see `mpfn.functions.router.RouterSettings`).
"""

from __future__ import annotations

from mpfn.functions.router.asgi import create_app

app = create_app()
