"""The pure parts of `mpfn stats refresh`: probe requests and snapshot documents (the
probing itself runs against real workers in test_cli_routing)."""

from __future__ import annotations

import json

from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion, TensorSpec
from mpfn.routing import RoutingState
from mpfn.routing.probe import ProbeResult, probe_body, snapshot_document


def test_probe_body_is_a_zero_batch_of_one() -> None:
    body = probe_body(demo_model_version())
    assert body is not None
    assert json.loads(body) == {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0] * 16}]
    }
    text = ModelVersion(
        name="t", version="1", inputs=[TensorSpec(name="s", datatype="BYTES", shape=[1])]
    )
    assert probe_body(text) is None
    assert probe_body(ModelVersion(name="n", version="1")) is None


def test_snapshot_document_from_a_probe() -> None:
    result = ProbeResult(
        "p",
        timings=[0.5],
        models={"demo/1": [3.0, 1.0, 2.0], "other/2": [10.0]},
        loaded=["demo/1", "other/2"],
        requests=8,
        errors=2,
        last_error="HTTP 503",
        load=(1, 4),
    )
    doc = snapshot_document(result, 100.0)
    assert doc.key == "stats/p.json"
    assert doc.models["demo/1"].ms == 2.0 and doc.models["demo/1"].samples == 3
    assert doc.latency is not None and doc.latency.ms == 2.5 and doc.latency.samples == 4
    assert (doc.inflight, doc.queued, doc.reported_at) == (1, 4, 100.0)
    assert doc.error_rate == 0.25 and doc.last_error_at == 100.0
    # A router starting from it knows the pool's models and averages.
    state = RoutingState()
    state.load([doc])
    assert state.feedback.stats["p"].loaded == frozenset({"demo/1", "other/2"})
    assert state.feedback.latency[("p", "demo/1")].value == 2.0


def test_snapshot_of_an_unreachable_pool() -> None:
    result = ProbeResult("down")
    result.failed("GET http://127.0.0.1:9/v2/health/ready: ConnectError: refused")
    doc = snapshot_document(result, 5.0)
    assert doc.latency is None and doc.loaded is None and doc.models == {}
    assert doc.error_rate == 1.0 and doc.errors == doc.requests == 1
    assert doc.last_error is not None and "ConnectError" in doc.last_error
