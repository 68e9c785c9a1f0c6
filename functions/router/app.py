"""ASGI entry point of the router for uvicorn, Cloud Run and other containers.

`uvicorn mpfn.functions.router.app:app`; the state comes from `MPFN_STATE` (or mpfn.yaml),
tunables from `MPFN_ROUTER_*` variables (see `mpfn.router.RouterSettings`).
"""

from __future__ import annotations

from mpfn.router import create_app

app = create_app()
