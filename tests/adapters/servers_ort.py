"""mpfn's ONNX Runtime worker for the adapter tests: a local store holding the demo model
(and a document whose artifact digest matches nothing), one worker process per session."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from pydantic import HttpUrl

from mpfn.adapters.base import Adapter, AdapterConfig
from mpfn.artifacts import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.documents import ModelVersion, Pool
from mpfn.protocol import InferRequest
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.adapters.contract import ContractCase, fp32_request
from tests.servers.mpfn_procs import worker
from tests.servers.process import Proc


@dataclass(frozen=True)
class DemoArtifact:
    """The demo ONNX model, its path, and onnxruntime running it directly."""

    path: Path
    session: ort.InferenceSession

    def run(self, request: InferRequest) -> Mapping[str, npt.NDArray[Any]]:
        feed = {t.name: t.array for t in request.inputs}
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feed), strict=True))


@pytest.fixture(scope="session")
def demo_artifact(tmp_path_factory: pytest.TempPathFactory) -> DemoArtifact:
    path = tmp_path_factory.mktemp("artifact") / "demo.onnx"
    path.write_bytes(build_demo_model())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return DemoArtifact(path, ort.InferenceSession(str(path), options))


@dataclass(frozen=True)
class OrtServer:
    proc: Proc
    demo: ModelVersion
    broken: ModelVersion


@pytest.fixture(scope="session")
def ort_server(
    tmp_path_factory: pytest.TempPathFactory, demo_artifact: DemoArtifact
) -> Iterator[OrtServer]:
    root = tmp_path_factory.mktemp("ort")
    store = LocalStore(root / "state")
    ref = push_model(store, demo_artifact.path, name="demo", version="1")
    demo = demo_model_version(ref)
    # A document whose artifact digest matches nothing: loading it fails in the worker.
    broken = demo_model_version(
        ref.model_copy(update={"blob_digest": "sha256:" + "0" * 64}), name="broken"
    )
    docs = Documents(store)
    for doc in (demo, broken):
        docs.upsert(doc.key, doc)
    with worker(store, root / "logs", "ort-worker", preload=None, cache_dir=root / "cache") as proc:
        yield OrtServer(proc, demo, broken)


def ort_pool(url: str) -> Pool:
    return Pool(id="ort-pool", cloud="local", adapter="ort", endpoint=HttpUrl(url))


@pytest.fixture(scope="session")
def ort_case(ort_server: OrtServer, demo_artifact: DemoArtifact) -> ContractCase:
    demo = ort_server.demo
    x = np.random.default_rng(11).standard_normal((3, 16)).astype(np.float32)
    bad = fp32_request(np.zeros((1, 15), dtype=np.float32))

    async def bad_request(adapter: Adapter) -> object:
        return await adapter.infer(demo, bad)

    async def backend_failure(adapter: Adapter) -> object:
        return await adapter.load(ort_server.broken)

    return ContractCase(
        kind="ort",
        config=AdapterConfig(pool=ort_pool(ort_server.proc.url)),
        model=demo,
        key="demo:1",
        request=fp32_request(x),
        reference=demo_artifact.run,
        missing=demo_model_version(None, name="ghost"),
        bad_request=bad_request,
        backend_failure=backend_failure,
    )
