"""Fixtures for the warmer: a model catalog, two real ORT workers, a fresh warm state.

The workers serve the session-wide catalog store (model documents and OCI artifacts).
Each test gets its own warm state store holding copies of the model documents it needs,
its pools and its usage, so tests do not see each other's usage, fits or plans; workers
are reset (everything unloaded) before each test that uses them.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import httpx
import pytest
from procs import PYTHON, Proc, free_port, running

from mpfn.artifacts import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.state import Documents
from mpfn.store import LocalStore

from .helpers import CATALOG, Catalog, Workers, ready


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


def _start_worker(catalog: Catalog) -> Generator[Proc, None, None]:
    port = free_port()
    argv = [
        PYTHON, "-m", "mpfn.adapters.ort_worker",
        "--host", "127.0.0.1", "--port", str(port),
        "--state", str(catalog.store.root),
        "--cache-dir", str(catalog.root / f"cache-{port}"),
        "--intra-op-threads", "1",
    ]  # fmt: skip
    with running(
        argv,
        port=port,
        log_dir=catalog.root / "logs",
        name="ort-worker",
        ready_url=f"http://127.0.0.1:{port}/v2/health/ready",
    ) as proc:
        yield proc


@pytest.fixture(scope="session")
def _workers(catalog: Catalog) -> Iterator[Workers]:
    a = _start_worker(catalog)
    b = _start_worker(catalog)
    try:
        yield Workers(next(a), next(b))
    finally:
        a.close()
        b.close()


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
