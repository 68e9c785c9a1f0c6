"""Fixtures for the warmer: a model catalog, two real ORT workers, a fresh warm state.

The workers serve the session-wide catalog store (model documents and OCI artifacts).
Each test gets its own warm state store holding copies of the model documents it needs,
its pools and its usage, so tests do not see each other's usage, fits or plans; workers
are reset (everything unloaded) before each test that uses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mpfn.artifacts import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.servers.mpfn_procs import worker as running_worker
from tests.warmer.helpers import CATALOG, Catalog, Workers, ready


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    root = tmp_path_factory.mktemp("warm-catalog")
    store = LocalStore(root / "state")
    path = root / "demo.onnx"
    path.write_bytes(build_demo_model())
    ref = push_model(store, path, name="demo", version="1")
    models = {name: demo_model_version(ref, name=name) for name in CATALOG}
    # A model whose artifact digest matches nothing: every load of it fails.
    models["broken"] = demo_model_version(
        ref.model_copy(update={"blob_digest": "sha256:" + "0" * 64}), name="broken"
    )
    docs = Documents(store)
    for doc in models.values():
        docs.upsert(doc.key, doc)
    return Catalog(root, store, models)


@pytest.fixture(scope="session")
def _workers(catalog: Catalog) -> Iterator[Workers]:
    logs = catalog.root / "logs"
    with (
        running_worker(catalog.store, logs, "ort-worker-a", preload=None) as a,
        running_worker(catalog.store, logs, "ort-worker-b", preload=None) as b,
    ):
        yield Workers(a, b)


@pytest.fixture
def workers(_workers: Workers) -> Workers:
    """Both workers, with nothing loaded."""
    for worker in _workers.all():
        for model in ready(worker):
            url = f"{worker.url}/v2/repository/models/{model}/unload"
            httpx.post(url, timeout=30).raise_for_status()
    return _workers


@pytest.fixture
def warm_store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "warm-state")
