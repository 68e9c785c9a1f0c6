"""The batching shell in process: queue accounting (the router's `x-mpfn-queued` /
`x-mpfn-inflight`), what shares a batch, failures split to their request, and the load-time
checks (signature, bit-identity probe). Gated by events, never by the clock."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from mpfn.adapters.ort_worker.admission import Admission
from mpfn.adapters.ort_worker.batcher import Inference
from mpfn.adapters.ort_worker.batching import (
    batch_key,
    concat_feeds,
    probe_problem,
    signature_problem,
    split_outputs,
)
from mpfn.adapters.ort_worker.batchpolicy import BatchLimits
from mpfn.adapters.ort_worker.metrics import WorkerMetrics
from mpfn.demo import build_demo_model
from mpfn.documents import ModelVersion


@dataclass(eq=False)
class GatedModel:
    """Doubles its input; each run waits for `gate` and records its batch size."""

    batch_limits: BatchLimits = field(default_factory=lambda: BatchLimits(8, 1.0))
    batch_queue: object | None = None
    doc: ModelVersion = field(default_factory=lambda: ModelVersion(name="gated", version="1"))
    gate: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    started: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    sizes: list[int] = field(default_factory=list)

    def run(self, outputs: list[str], feed: dict[str, Any]) -> list[Any]:
        x = feed["x"]
        self.sizes.append(x.shape[0])
        self.started.release()
        assert self.gate.acquire(timeout=30)
        if (x < 0).any():
            raise ValueError("negative input")
        return [x * 2]


async def started(model: GatedModel) -> None:
    assert await asyncio.to_thread(model.started.acquire, True, 30)


def make() -> tuple[Inference, GatedModel]:
    admission = Admission(1, 64)
    inference = Inference(admission, ThreadPoolExecutor(1), WorkerMetrics())
    return inference, GatedModel()


def row(value: float, width: int = 4) -> dict[str, Any]:
    return {"x": np.full((1, width), value, dtype=np.float32)}


async def test_waiting_requests_go_in_one_batch_and_are_counted_as_queued() -> None:
    inference, model = make()
    first = asyncio.ensure_future(inference.run(model, row(1), ["y"]))  # type: ignore[arg-type]
    await started(model)
    assert (inference.inflight, inference.queued) == (1, 0)
    rest = [
        asyncio.ensure_future(inference.run(model, row(v), ["y"]))  # type: ignore[arg-type]
        for v in (2, 3, 4)
    ]
    await asyncio.sleep(0)
    assert (inference.inflight, inference.queued) == (1, 3)
    model.gate.release()
    assert (await first).batch_size == 1
    await started(model)  # the three run together
    assert (inference.inflight, inference.queued) == (3, 0)
    model.gate.release()
    answers = await asyncio.gather(*rest)
    assert model.sizes == [1, 3]
    for value, ran in zip((2, 3, 4), answers, strict=True):
        assert ran.batch_size == 3
        assert np.array_equal(ran.arrays[0], np.full((1, 4), value * 2, dtype=np.float32))
    assert (inference.inflight, inference.queued) == (0, 0)


async def test_different_shapes_and_outputs_never_share_a_batch() -> None:
    inference, model = make()
    first = asyncio.ensure_future(inference.run(model, row(1), ["y"]))  # type: ignore[arg-type]
    await started(model)
    waiting = [
        inference.run(model, row(2), ["y"]),  # type: ignore[arg-type]
        inference.run(model, row(3, width=5), ["y"]),  # type: ignore[arg-type]
        inference.run(model, row(4), ["y"]),  # type: ignore[arg-type]
        inference.run(model, row(5), ["y", "z"]),  # type: ignore[arg-type]
    ]
    tasks = [asyncio.ensure_future(w) for w in waiting]
    await asyncio.sleep(0)
    for _ in range(4):
        model.gate.release()
    await first
    answers = await asyncio.gather(*tasks)
    assert model.sizes == [1, 2, 1, 1]  # rows 2 and 4 together, the others alone
    assert [a.batch_size for a in answers] == [2, 1, 2, 1]
    assert answers[1].arrays[0].shape == (1, 5)


async def test_a_failing_request_fails_alone() -> None:
    inference, model = make()
    first = asyncio.ensure_future(inference.run(model, row(1), ["y"]))  # type: ignore[arg-type]
    await started(model)
    tasks = [
        asyncio.ensure_future(inference.run(model, row(v), ["y"]))  # type: ignore[arg-type]
        for v in (2, -1, 3)
    ]
    await asyncio.sleep(0)
    for _ in range(5):  # the first, the failed batch of 3, then 3 one by one
        model.gate.release()
    await first
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert model.sizes == [1, 3, 1, 1, 1]
    assert isinstance(results[1], ValueError)
    for value, ran in ((2, results[0]), (3, results[2])):
        assert not isinstance(ran, BaseException)
        assert ran.batch_size == 1
        assert np.array_equal(ran.arrays[0], np.full((1, 4), value * 2, dtype=np.float32))
    assert (inference.inflight, inference.queued) == (0, 0)


async def test_a_cancelled_waiting_request_leaves_the_queue() -> None:
    inference, model = make()
    first = asyncio.ensure_future(inference.run(model, row(1), ["y"]))  # type: ignore[arg-type]
    await started(model)
    gone = asyncio.ensure_future(inference.run(model, row(2), ["y"]))  # type: ignore[arg-type]
    kept = asyncio.ensure_future(inference.run(model, row(3), ["y"]))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    assert inference.queued == 1
    model.gate.release()
    model.gate.release()
    await first
    assert (await kept).batch_size == 1
    assert model.sizes == [1, 1]


def test_batch_keys() -> None:
    a = batch_key({"x": np.zeros((2, 3), np.float32)}, ["y"])
    assert a is not None and a[1] == 2
    assert a == batch_key({"x": np.ones((2, 3), np.float32)}, ["y"])
    assert batch_key({"x": np.zeros((1, 3), np.float32)}, ["y"])[0] == a[0]  # type: ignore[index]
    assert batch_key({"x": np.zeros((1, 4), np.float32)}, ["y"])[0] != a[0]  # type: ignore[index]
    assert batch_key({"x": np.zeros((1, 3), np.float64)}, ["y"])[0] != a[0]  # type: ignore[index]
    assert batch_key({"x": np.float32(1.0) * np.ones(())}, ["y"]) is None  # rank 0
    assert batch_key({"x": np.zeros((0, 3))}, ["y"]) is None
    mismatched = {"a": np.zeros((1, 3)), "b": np.zeros((2, 3))}
    assert batch_key(mismatched, ["y"]) is None


def test_concat_and_split() -> None:
    feeds = [{"x": np.full((n, 2), n, np.float32)} for n in (1, 2, 3)]
    stacked = concat_feeds(feeds)["x"]
    assert stacked.shape == (6, 2)
    parts = split_outputs([stacked * 10], [1, 2, 3])
    assert parts is not None
    for n, part in zip((1, 2, 3), parts, strict=True):
        assert np.array_equal(part[0], np.full((n, 2), n * 10, np.float32))
    assert split_outputs([stacked], [1, 2]) is None
    assert split_outputs([np.float32(1.0) * np.ones(())], [1]) is None


def session_of(
    nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any] | None = None
) -> ort.InferenceSession:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])


def test_signature_check() -> None:
    demo = ort.InferenceSession(build_demo_model(), providers=["CPUExecutionProvider"])
    assert signature_problem(demo.get_inputs(), demo.get_outputs()) is None
    fixed = session_of(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    problem = signature_problem(fixed.get_inputs(), fixed.get_outputs())
    assert problem == "input 'x' has a fixed first dimension (1)"
    scalar = session_of(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    assert signature_problem(scalar.get_inputs(), scalar.get_outputs()) == "input 'x' has rank 0"


def test_probe_accepts_the_demo_and_refuses_what_does_not_split() -> None:
    demo = ort.InferenceSession(build_demo_model(), providers=["CPUExecutionProvider"])
    assert probe_problem(demo) is None
    # the output's first dimension is the sum over the batch: it does not follow it
    summed = session_of(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [0])],
    )
    assert probe_problem(summed) == "an output's first dimension does not follow the batch"


def reduce_sum_over_seq() -> ort.InferenceSession:
    """Mean-pooling's sum over the sequence, as all-MiniLM-L6-v2's usual export has it:
    onnxruntime sums one row in another order than several."""
    return session_of(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )


def test_probe_refuses_a_kernel_that_is_not_batch_invariant() -> None:
    assert probe_problem(reduce_sum_over_seq()) == "output 'y' differs when rows run together"
