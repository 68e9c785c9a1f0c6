"""mpfn's ONNX Runtime worker: a long-lived Open Inference Protocol v2 server.

It serves models described in the state store (`models/<name>/<version>.json`), fetches
their digest-pinned artifacts into a local cache, loads them on first use or on explicit
load, evicts idle ones under a memory budget and bounds concurrent inference. Run it with
`python -m mpfn.adapters.ort_worker --state URL --port P`.

The names below are imported on first use, so the framework-free pieces (`admission`,
`guard`, `http`, `errors`) can be reused — by the adapter server — without onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mpfn.adapters.ort_worker.app import WorkerApp
    from mpfn.adapters.ort_worker.options import WorkerConfig, build_app, parse_args
    from mpfn.adapters.ort_worker.providers import DEFAULT_PREFERENCE, choose_providers
    from mpfn.adapters.ort_worker.repository import ModelRepository, RepositoryConfig

_EXPORTS = {
    "DEFAULT_PREFERENCE": "providers",
    "ModelRepository": "repository",
    "RepositoryConfig": "repository",
    "WorkerApp": "app",
    "WorkerConfig": "options",
    "build_app": "options",
    "choose_providers": "providers",
    "parse_args": "options",
}

__all__ = [
    "DEFAULT_PREFERENCE",
    "ModelRepository",
    "RepositoryConfig",
    "WorkerApp",
    "WorkerConfig",
    "build_app",
    "choose_providers",
    "parse_args",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
