"""The adapter server: mpfn's pool protocol (Open Inference Protocol v2 with the
model-repository extension and the `x-mpfn-*` load headers) in front of any backend that
has an adapter, so the router can forward to it as to mpfn's own ORT worker.

`AdapterServer` (`app`) is the ASGI app, `ModelCatalog` (`catalog`) finds model documents,
`errors` maps failures to HTTP, `options` reads the command line and builds the app. Run it
with `python -m mpfn.adapters.server --kind KIND --backend URL --port P`, or a kind's own
entry point (`python -m mpfn.adapters.tfserving`, `python -m mpfn.adapters.torchserve`).
"""

from __future__ import annotations

from mpfn.adapters.server.app import AdapterServer
from mpfn.adapters.server.catalog import ModelCatalog
from mpfn.adapters.server.options import ServerConfig, build_server, parse_args

__all__ = ["AdapterServer", "ModelCatalog", "ServerConfig", "build_server", "parse_args"]
