"""Fixtures for the ONNX Runtime worker: a LocalStore with models pushed as OCI artifacts
and real worker processes (`tests.servers.mpfn_procs`) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mpfn.artifacts import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import ModelVersion, TensorSpec
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.servers.mpfn_procs import worker as running_worker
from tests.servers.process import Proc

SLOW_WIDTH = 256
SLOW_DEPTH = 24


def build_slow_model() -> bytes:
    """x FP32 [-1,256] -> y: a chain of MatMul+Tanh whose run time grows with the batch."""
    weight = np.random.default_rng(7).standard_normal((SLOW_WIDTH, SLOW_WIDTH)).astype(np.float32)
    nodes, prev = [], "x"
    for i in range(SLOW_DEPTH):
        nodes.append(helper.make_node("MatMul", [prev, "W"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i}"]))
        prev = f"t{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SLOW_WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", SLOW_WIDTH])],
        [numpy_helper.from_array(weight, name="W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@dataclass(frozen=True)
class StateFixture:
    root: Path
    store: LocalStore
    demo_path: Path


@pytest.fixture(scope="session")
def state(tmp_path_factory: pytest.TempPathFactory) -> StateFixture:
    root = tmp_path_factory.mktemp("worker-state")
    store = LocalStore(root / "state")
    docs = Documents(store)
    demo_path = root / "demo.onnx"
    demo_path.write_bytes(build_demo_model())
    ref = push_model(store, demo_path, name="demo", version="1")
    for doc in (
        demo_model_version(ref),
        # Two more versions of the same graph: version-less paths must pick "10" over "9".
        demo_model_version(ref, name="multi", version="9"),
        demo_model_version(ref, name="multi", version="10"),
        # Two models that do not fit a 15 MB budget together.
        demo_model_version(ref, name="lru-a", memory_mb=10),
        demo_model_version(ref, name="lru-b", memory_mb=10),
        demo_model_version(ref, name="huge", memory_mb=100),
    ):
        docs.upsert(doc.key, doc)
    # A document whose artifact digest matches nothing in the store.
    broken = demo_model_version(
        ref.model_copy(update={"blob_digest": "sha256:" + "0" * 64}), name="broken"
    )
    docs.upsert(broken.key, broken)
    slow_path = root / "slow.onnx"
    slow_path.write_bytes(build_slow_model())
    slow_ref = push_model(store, slow_path, name="slow", version="1")
    spec = [TensorSpec(name="x", datatype="FP32", shape=[-1, SLOW_WIDTH])]
    out = [TensorSpec(name="y", datatype="FP32", shape=[-1, SLOW_WIDTH])]
    slow = ModelVersion(name="slow", version="1", artifact=slow_ref, inputs=spec, outputs=out)
    docs.upsert(slow.key, slow)
    return StateFixture(root, store, demo_path)


def start_worker(state: StateFixture, *extra: str) -> Iterator[Proc]:
    """A worker on `state` (nothing preloaded unless `extra` says so), stopped afterwards."""
    with running_worker(
        state.store, state.root / "logs", "ort-worker", *extra, preload=None
    ) as proc:
        yield proc


@pytest.fixture(scope="session")
def worker(state: StateFixture) -> Iterator[Proc]:
    """The main worker: default budget, a 1 MB body limit, demo preloaded."""
    yield from start_worker(state, "--max-body-mb", "1", "--preload", "demo:1")
