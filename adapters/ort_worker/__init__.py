"""mpfn's ONNX Runtime worker: a long-lived Open Inference Protocol v2 server.

It serves models described in the state store (`models/<name>/<version>.json`), fetches
their digest-pinned artifacts into a local cache, loads them on first use or on explicit
load, evicts idle ones under a memory budget and bounds concurrent inference. Run it with
`python -m mpfn.adapters.ort_worker --state URL --port P`.
"""

from mpfn.adapters.ort_worker.app import WorkerApp
from mpfn.adapters.ort_worker.options import WorkerConfig, build_app, parse_args
from mpfn.adapters.ort_worker.providers import DEFAULT_PREFERENCE, choose_providers
from mpfn.adapters.ort_worker.repository import ModelRepository, RepositoryConfig

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
