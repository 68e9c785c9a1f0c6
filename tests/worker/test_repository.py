"""Model-repository extension and the LRU memory budget, against real worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.servers.process import Proc
from tests.worker.conftest import StateFixture, start_worker

X = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}


@pytest.fixture(scope="module")
def lru_worker(state: StateFixture) -> Iterator[Proc]:
    """A worker whose 15 MB budget fits one of the 10 MB models lru-a / lru-b."""
    yield from start_worker(state, "--memory-mb", "15")


def index(worker: Proc) -> dict[str, str]:
    rows = httpx.post(f"{worker.url}/v2/repository/index").json()
    return {f"{r['name']}/{r['version']}": r["state"] for r in rows}


def test_index_load_unload_with_tritonclient(worker: Proc) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{worker.port}")
    rows = client.get_model_repository_index()
    names = {(r["name"], r["version"]) for r in rows}
    assert {("demo", "1"), ("multi", "9"), ("multi", "10"), ("slow", "1")} <= names

    client.unload_model("multi")
    assert not client.is_model_ready("multi")
    client.load_model("multi")
    assert client.is_model_ready("multi")
    assert index(worker)["multi/10"] == "READY"
    assert index(worker)["multi/9"] == "UNAVAILABLE"
    client.unload_model("multi")
    assert index(worker)["multi/10"] == "UNAVAILABLE"
    assert not client.is_model_ready("multi", "10")


def test_explicit_version_load_reports_load_time(worker: Proc) -> None:
    body = {"parameters": {"version": "9"}}
    first = httpx.post(f"{worker.url}/v2/repository/models/multi/load", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["version"] == "9"
    assert float(first.headers["x-mpfn-load-ms"]) >= 0
    again = httpx.post(f"{worker.url}/v2/repository/models/multi/load", json=body)
    assert again.status_code == 200 and "x-mpfn-load-ms" not in again.headers
    # While 9 is the only loaded version, version-less requests go to it.
    reply = httpx.post(f"{worker.url}/v2/models/multi/infer", json=X)
    assert reply.json()["model_version"] == "9"
    unload = httpx.post(f"{worker.url}/v2/repository/models/multi/unload", json=body)
    assert unload.json() == {"name": "multi", "unloaded": ["9"]}


def test_ready_index_filter(worker: Proc) -> None:
    rows = httpx.post(f"{worker.url}/v2/repository/index", json={"ready": True}).json()
    assert rows and all(r["state"] == "READY" for r in rows)
    assert any(r["name"] == "demo" for r in rows)


def test_load_and_unload_unknown_model_is_404(worker: Proc) -> None:
    for action in ("load", "unload"):
        reply = httpx.post(f"{worker.url}/v2/repository/models/nope/{action}")
        assert reply.status_code == 404
        assert reply.json() == {"error": "model 'nope' not found"}


def test_cold_start_on_first_infer_sets_load_header(lru_worker: Proc) -> None:
    httpx.post(f"{lru_worker.url}/v2/repository/models/demo/unload")
    cold = httpx.post(f"{lru_worker.url}/v2/models/demo/infer", json=X)
    assert cold.status_code == 200 and "x-mpfn-load-ms" in cold.headers
    warm = httpx.post(f"{lru_worker.url}/v2/models/demo/infer", json=X)
    assert warm.status_code == 200 and "x-mpfn-load-ms" not in warm.headers
    assert warm.headers["x-mpfn-inflight"] == "0" and warm.headers["x-mpfn-queued"] == "0"
    httpx.post(f"{lru_worker.url}/v2/repository/models/demo/unload")


def test_lru_eviction_under_memory_budget(lru_worker: Proc) -> None:
    url = lru_worker.url
    a = httpx.post(f"{url}/v2/models/lru-a/infer", json=X)
    assert a.status_code == 200 and "x-mpfn-load-ms" in a.headers
    assert index(lru_worker)["lru-a/1"] == "READY"

    b = httpx.post(f"{url}/v2/models/lru-b/infer", json=X)
    assert b.status_code == 200 and "x-mpfn-load-ms" in b.headers
    states = index(lru_worker)
    assert states["lru-b/1"] == "READY" and states["lru-a/1"] == "UNAVAILABLE"

    # Same answer after the eviction and reload: it is the same artifact.
    again = httpx.post(f"{url}/v2/models/lru-a/infer", json=X)
    assert "x-mpfn-load-ms" in again.headers
    np.testing.assert_array_equal(
        again.json()["outputs"][0]["data"], b.json()["outputs"][0]["data"]
    )

    metrics = httpx.get(f"{url}/metrics").text
    assert 'mpfn_worker_model_evictions_total{model="lru-a"} 1.0' in metrics
    assert 'mpfn_worker_model_evictions_total{model="lru-b"} 1.0' in metrics
    assert "mpfn_worker_model_memory_mb 10.0" in metrics


def test_model_larger_than_the_budget_is_507(lru_worker: Proc) -> None:
    reply = httpx.post(f"{lru_worker.url}/v2/repository/models/huge/load")
    assert reply.status_code == 507
    assert reply.json() == {
        "error": "huge/1 needs 100 MB, more than the worker's whole memory budget of 15 MB"
    }
