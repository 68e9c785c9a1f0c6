"""`ort` adapter details against a real ORT worker: binary tensors on the wire both ways,
the worker's load headers and /metrics in stats, requested outputs."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from mpfn.adapters.base import AdapterError
from mpfn.adapters.ort import OrtAdapter, worker_metrics
from mpfn.protocol import InferRequest, RequestedOutput
from tests.adapters.contract import ContractCase, fp32_request


async def test_tensors_travel_as_binary_both_ways(
    ort_case: ContractCase, wire: tuple[httpx.AsyncClient, list[httpx.Response]]
) -> None:
    client, seen = wire
    adapter = OrtAdapter(ort_case.config, client=client)
    response = await adapter.infer(ort_case.model, ort_case.request)
    assert response.outputs["y"].shape == (3, 4)
    infer = seen[-1]
    header = int(infer.request.headers["inference-header-content-length"])
    assert len(infer.request.content) == header + 3 * 16 * 4  # JSON header + raw FP32 input
    assert infer.headers["content-type"] == "application/octet-stream"
    assert int(infer.headers["inference-header-content-length"]) == len(infer.content) - 3 * 4 * 4


async def test_cold_infer_reports_the_workers_load_time(ort_case: ContractCase) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        adapter = OrtAdapter(ort_case.config, client=client)
        await adapter.unload(ort_case.model)
        await adapter.infer(ort_case.model, ort_case.request)  # loads on demand
        stats = await adapter.stats()
    assert stats.load_ms["demo:1"] > 0
    assert stats.extra["reported"] == {"x-mpfn-inflight": 0, "x-mpfn-queued": 0}
    assert stats.extra["backend_latency_ms"]["demo"] > 0
    assert stats.requests >= 1  # the worker's own request counter


async def test_only_requested_outputs_and_unknown_outputs_are_400(ort_case: ContractCase) -> None:
    x = np.ones((1, 16), dtype=np.float32)
    base = fp32_request(x)
    async with httpx.AsyncClient(timeout=30) as client:
        adapter = OrtAdapter(ort_case.config, client=client)
        wanted = InferRequest(inputs=base.inputs, outputs=[RequestedOutput("y", False)], id="r1")
        response = await adapter.infer(ort_case.model, wanted)
        assert list(response.outputs) == ["y"] and response.id == "r1"
        unknown = InferRequest(inputs=base.inputs, outputs=[RequestedOutput("z", True)])
        with pytest.raises(AdapterError) as caught:
            await adapter.infer(ort_case.model, unknown)
    assert caught.value.status == 400
    assert "unknown output 'z'" in caught.value.message


def test_worker_metrics_are_read_from_the_exposition_format() -> None:
    text = "\n".join(
        [
            "# TYPE mpfn_worker_requests counter",
            'mpfn_worker_requests_total{model="demo",status="200"} 8.0',
            'mpfn_worker_requests_total{model="demo",status="400"} 2.0',
            "# TYPE mpfn_worker_request_seconds histogram",
            'mpfn_worker_request_seconds_sum{model="demo"} 0.02',
            'mpfn_worker_request_seconds_count{model="demo"} 10.0',
            "# TYPE mpfn_worker_inflight gauge",
            "mpfn_worker_inflight 3.0",
            "# TYPE mpfn_worker_queued gauge",
            "mpfn_worker_queued 1.0",
            "",
        ]
    )
    metrics = worker_metrics(text)
    assert (metrics["requests"], metrics["errors"]) == (10.0, 2.0)
    assert (metrics["inflight"], metrics["queued"]) == (3.0, 1.0)
    assert metrics["latency_ms"] == {"demo": pytest.approx(2.0)}
