"""End to end over gRPC: tritonclient.grpc and raw stubs against a real worker's and a real
router's `inference.GRPCInferenceService`.

Pools: `g1`, a worker reached over gRPC (`options.grpc_endpoint`; its REST endpoint is a
host that never answers, so only gRPC can serve it); `r1`, a worker reached over REST
only (calls translated); `dead`, the cheapest, whose gRPC port refuses connections
(every call fails over from it). Results must equal onnxruntime on the same artifact.
tritonclient.grpc runs in a process of its own (`tests.servers.triton_grpc`): it cannot
share one with KServe's client.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest

from mpfn.auth import issue_key
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.protocol import grpc_predict_v2_pb2 as pb
from mpfn.protocol.grpc_codec import SERVICE
from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.up import UpPlan, components
from tests.factories import pool
from tests.servers.mpfn_procs import (
    publish_demo,
    start_grpc_router,
    start_grpc_worker,
    start_worker,
)
from tests.servers.ports import unused_port
from tests.servers.process import Proc
from tests.servers.triton_grpc import X as SURVEY_X
from tests.servers.triton_grpc import survey

X = np.asarray(SURVEY_X, dtype=np.float32)  # what `survey` sends


@dataclass
class Stack:
    store: LocalStore
    workers: list[Proc]
    worker_grpc: int  # the gRPC worker's port
    router: Proc
    router_grpc: int
    keyed: Proc  # a router with auth=keys
    keyed_grpc: int
    key: str
    other_key: str  # a key for another model only


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("grpc")
    store = LocalStore(root / "state")
    publish_demo(store, root)
    docs = Documents(store)
    docs.upsert("models/lonely/1.json", demo_model_version(name="lonely"))  # no pool serves it
    procs: list[Proc] = []
    try:
        grpc_worker, worker_grpc = start_grpc_worker(store, root / "logs", "w-grpc")
        procs.append(grpc_worker)
        rest_worker = start_worker(store, root / "logs", "w-rest")
        procs.append(rest_worker)
        pools = [
            pool("g1", "http://g1.invalid:8000", models=["demo"], cost=1.0,
                 options={"grpc_endpoint": f"127.0.0.1:{worker_grpc}"}),
            pool("r1", rest_worker.url, models=["demo"], cost=2.0),
            pool("dead", f"http://127.0.0.1:{unused_port()}", models=["demo"], cost=0.1,
                 options={"grpc_endpoint": f"127.0.0.1:{unused_port()}"}),
        ]  # fmt: skip
        for p in pools:
            docs.upsert(p.key, p)
        key, doc = issue_key("grpc-test", models=["demo"])
        other_key, other = issue_key("other", models=["lonely"])
        docs.upsert(doc.key, doc)
        docs.upsert(other.key, other)
        router, router_grpc = start_grpc_router(store, root / "logs")
        procs.append(router)
        keyed, keyed_grpc = start_grpc_router(
            store, root / "logs", "router-keys", settings={"auth": "keys"}
        )
        procs.append(keyed)
        yield Stack(store, [grpc_worker, rest_worker], worker_grpc, router, router_grpc,
                    keyed, keyed_grpc, key, other_key)  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()


def reference(x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(build_demo_model(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["y"], {"x": x})[0])


def raw_call(
    port: int,
    msg: pb.ModelInferRequest,
    metadata: list[tuple[str, str]] | None = None,
) -> tuple[pb.ModelInferResponse, dict[str, str]]:
    """ModelInfer with our own stubs; returns the answer and its trailing metadata."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        method = channel.unary_unary(
            f"/{SERVICE}/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        answer, call = method.with_call(msg, metadata=metadata, timeout=30)
        return answer, {k: v for k, v in call.trailing_metadata() or () if isinstance(v, str)}


def infer_request(x: np.ndarray, *, raw: bool, model: str = "demo") -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name=model, id="req-1")
    tensor = msg.inputs.add(name="x", datatype="FP32", shape=x.shape)
    if raw:
        msg.raw_input_contents.append(x.astype("<f4").tobytes())
    else:
        tensor.contents.fp32_contents.extend(x.ravel().tolist())
    return msg


def outputs_of(answer: pb.ModelInferResponse) -> np.ndarray:
    out = answer.outputs[0]
    if answer.raw_output_contents:
        flat = np.frombuffer(answer.raw_output_contents[0], dtype="<f4")
    else:
        flat = np.array(out.contents.fp32_contents, dtype=np.float32)
    return flat.reshape(tuple(out.shape))


def ok(result: dict[str, Any], name: str) -> Any:
    assert "ok" in result[name], result[name]
    return result[name]["ok"]


def error(result: dict[str, Any], name: str) -> tuple[str, str]:
    assert "error" in result[name], result[name]
    status, message = result[name]["error"]
    return str(status), str(message)


# -- the worker directly -------------------------------------------------------------------


def test_worker_grpc_equals_onnxruntime(stack: Stack) -> None:
    expected = reference(X)
    for raw in (True, False):
        answer, feedback = raw_call(stack.worker_grpc, infer_request(X, raw=raw))
        assert bool(answer.raw_output_contents) == raw  # answered in the request's form
        assert answer.id == "req-1" and answer.model_version == "1"
        np.testing.assert_allclose(outputs_of(answer), expected, rtol=1e-6)
        assert {"x-mpfn-inflight", "x-mpfn-queued"} <= set(feedback)


def test_worker_grpc_with_tritonclient(stack: Stack) -> None:
    result = survey(stack.worker_grpc)
    np.testing.assert_allclose(ok(result, "infer"), reference(X), rtol=1e-6)
    assert ok(result, "live") and ok(result, "ready") and ok(result, "model_ready")
    meta = ok(result, "metadata")
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["tensors"] == [["x", "FP32", [-1, 16]], ["y", "FP32", [-1, 4]]]
    assert "binary_tensor_data" in ok(result, "extensions")
    assert error(result, "nope_metadata")[0] == "StatusCode.NOT_FOUND"
    assert error(result, "nope_infer") == ("StatusCode.NOT_FOUND", "model 'nope' not found")
    status, message = error(result, "bad_infer")
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert "shape [3,8] does not match [-1,16]" in message


# -- through the router --------------------------------------------------------------------


@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("pool_id", ["g1", "r1"])
def test_router_grpc_equals_onnxruntime_over_grpc_and_rest_pools(
    stack: Stack, raw: bool, pool_id: str
) -> None:
    """`g1` is reached over gRPC (its REST endpoint never answers), `r1` over REST (the call
    translated both ways); both in the form the request used."""
    msg = infer_request(X, raw=raw)
    answer, trailing = raw_call(stack.router_grpc, msg, [("x-mpfn-pool", pool_id)])
    assert trailing["x-mpfn-pool"] == pool_id
    assert bool(answer.raw_output_contents) == raw
    assert answer.id == "req-1"
    np.testing.assert_allclose(outputs_of(answer), reference(X), rtol=1e-6)


def test_tritonclient_through_the_router(stack: Stack) -> None:
    expected = reference(X)
    for headers in (None, {"x-mpfn-pool": "g1"}, {"x-mpfn-pool": "r1"}):
        result = survey(stack.router_grpc, headers)
        np.testing.assert_allclose(ok(result, "infer"), expected, rtol=1e-6)


def test_failover_from_a_dead_grpc_pool(stack: Stack) -> None:
    """`dead` is the cheapest, so first in the plan until its breaker opens: every call
    still succeeds on a live pool."""
    answers = [raw_call(stack.router_grpc, infer_request(X, raw=True)) for _ in range(8)]
    for answer, trailing in answers:
        np.testing.assert_allclose(outputs_of(answer), reference(X), rtol=1e-6)
        assert trailing["x-mpfn-pool"] in ("g1", "r1")
    first = answers[0][1]["x-mpfn-route-reason"]
    assert "attempt 2 after dead" in first, first


def test_router_health_metadata_and_errors_over_tritonclient(stack: Stack) -> None:
    result = survey(stack.router_grpc)
    assert ok(result, "live") and ok(result, "ready") and ok(result, "model_ready")
    assert ok(result, "lonely_ready") is False  # registered, no pool serves it
    assert ok(result, "server") == "mpfn-router"
    meta = ok(result, "metadata")
    assert (meta["name"], meta["versions"]) == ("demo", ["1"])
    assert meta["tensors"] == [["x", "FP32", [-1, 16]], ["y", "FP32", [-1, 4]]]
    for name in ("nope_metadata", "nope_ready"):
        assert error(result, name)[0] == "StatusCode.NOT_FOUND"
    assert error(result, "nope_infer") == ("StatusCode.NOT_FOUND", "unknown model 'nope'")
    status, message = error(result, "lonely_infer")
    assert status == "StatusCode.UNAVAILABLE" and "no pool serves model 'lonely'" in message
    status, message = error(result, "bad_infer")
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert "shape [3,8] does not match [-1,16]" in message


def test_router_errors_over_raw_stubs(stack: Stack) -> None:
    msg = infer_request(X, raw=True)
    msg.raw_input_contents[0] = b"\x00" * 12  # not 3 x 16 FP32
    with pytest.raises(grpc.RpcError) as info:
        raw_call(stack.router_grpc, msg)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "expected 192" in (info.value.details() or "")  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as info:
        raw_call(stack.router_grpc, infer_request(X, raw=True), [("x-mpfn-region", "")])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_router_counts_grpc_calls_like_rest(stack: Stack) -> None:
    raw_call(stack.router_grpc, infer_request(X, raw=True), [("x-mpfn-pool", "g1")])
    text = httpx.get(f"{stack.router.url}/metrics", timeout=10).text
    assert 'mpfn_router_requests_total{model="demo",pool="g1",status="2xx"}' in text


def test_api_keys_as_metadata(stack: Stack) -> None:
    port = stack.keyed_grpc
    msg = infer_request(X, raw=True)
    for metadata in (None, [("authorization", "Bearer mpfn_000000000000_nope")]):
        with pytest.raises(grpc.RpcError) as info:
            raw_call(port, msg, metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert stack.key not in (info.value.details() or "")  # type: ignore[attr-defined]
    answer, _ = raw_call(port, msg, [("authorization", f"Bearer {stack.key}")])
    np.testing.assert_allclose(outputs_of(answer), reference(X), rtol=1e-6)
    with pytest.raises(grpc.RpcError) as info:
        raw_call(port, msg, [("authorization", f"Bearer {stack.other_key}")])
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    bad = pb.ModelInferRequest(model_name="demo/../x")
    with pytest.raises(grpc.RpcError) as info:
        raw_call(port, bad)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    refused = survey(port)
    assert ok(refused, "live")  # health stays open, as on REST
    assert error(refused, "metadata")[0] == "StatusCode.UNAUTHENTICATED"
    assert error(refused, "infer")[0] == "StatusCode.UNAUTHENTICATED"
    admitted = survey(port, {"authorization": f"Bearer {stack.key}"})
    assert ok(admitted, "metadata")["name"] == "demo"
    np.testing.assert_allclose(ok(admitted, "infer"), reference(X), rtol=1e-6)


def test_mpfn_up_passes_the_grpc_port(tmp_path: Path) -> None:
    plan = UpPlan(tmp_path, 8080, (), grpc_port=9001)
    (router,) = components(plan, LocalStore(tmp_path).url)
    assert router.args[-2:] == ("--grpc-port", "9001")
    (router,) = components(UpPlan(tmp_path, 8080, ()), LocalStore(tmp_path).url)
    assert "--grpc-port" not in router.args
