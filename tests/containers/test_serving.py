"""Serving from containers, not processes: the router image in front of two worker
containers and a TF Serving pool made of the TF Serving stand-in's container (NOT
TensorFlow Serving) fronted by the TF Serving adapter container; and the warmer image, run
once as a job, loading and unloading on those containerized pools.

tritonclient (binary and JSON tensors) through the router container gets what
onnxruntime computes from the same artifact, from the worker pools and, with the same v2
request, from the TF Serving pool.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from mpfn.containers import ContainerSpec
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.registry import Registry
from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.usage import USAGE_PREFIX
from mpfn.warm import WarmPlan, WarmSettings
from mpfn.warm.plan import PLAN_KEY, SETTINGS_KEY
from tests.factories import pool
from tests.servers.containers import RunningContainer, as_me, name, runtime, start_container
from tests.servers.mpfn_procs import publish_demo

TOKEN = "container-admin-token-for-tests"
Make = Callable[[tuple[int, ...]], ContainerSpec]
Ready = Callable[[tuple[int, ...]], str]
ADMIN = {"authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Stack:
    root: Path
    store: LocalStore
    workers: tuple[RunningContainer, ...]
    standin: RunningContainer  # ports: (REST, gRPC)
    adapter: RunningContainer
    router: RunningContainer


def _mounted(root: Path, image: str, args: tuple[str, ...], prefix: str) -> ContainerSpec:
    return as_me(
        ContainerSpec(
            name=name(prefix),
            image=image,
            args=args,
            env={"MPFN_STATE": f"file://{root / 'state'}"},
            volumes=((str(root), str(root)),),
        )
    )


@pytest.fixture(scope="module")
def stack(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("containers")
    store = LocalStore(root / "state")
    publish_demo(store, root)
    registry = Registry(store)
    registry.add_model(demo_model_version(None, name="tfdemo"))
    model_file = root / "models" / "tfdemo" / "1" / "model.onnx"
    model_file.parent.mkdir(parents=True)
    model_file.write_bytes(build_demo_model())
    token = root / "admin-token"
    token.write_text(TOKEN)
    state = store.url

    def worker(ports: tuple[int, ...]) -> ContainerSpec:
        args = ("--host", "127.0.0.1", "--port", str(ports[0]), "--state", state,
                "--cache-dir", "/tmp/cache", "--intra-op-threads", "1",
                "--admin-token-file", str(token))  # fmt: skip
        return _mounted(root, images["worker"], args, "worker")

    def standin(ports: tuple[int, ...]) -> ContainerSpec:
        args = ("--host", "127.0.0.1", "--rest_api_port", str(ports[0]), "--port", str(ports[1]))
        return _mounted(root, images["tfserving-standin"], args, "tfserving-standin")

    with contextlib.ExitStack() as running:

        def start(make: Make, ready: Ready, ports: int = 1) -> RunningContainer:
            container = start_container(make, ready=ready, ports=ports)
            running.callback(container.stop)
            return container

        workers = tuple(
            start(worker, lambda p: f"http://127.0.0.1:{p[0]}/v2/health/ready") for _ in range(2)
        )
        tfs = start(standin, lambda p: f"http://127.0.0.1:{p[0]}/v1/models/none", ports=2)
        rest, grpc = tfs.ports

        def adapter(ports: tuple[int, ...]) -> ContainerSpec:
            args = ("--host", "127.0.0.1", "--port", str(ports[0]),
                    "--backend", f"http://127.0.0.1:{rest}", "--state", state,
                    "--option", f"grpc_target=127.0.0.1:{grpc}",
                    "--option", f"base_path={root / 'models'}/{{name}}",
                    "--admin-token-file", str(token), "--cache-dir", "/tmp/cache",
                    "--log-level", "warning")  # fmt: skip
            return _mounted(root, images["adapter:tfserving"], args, "adapter-tfserving")

        front = start(adapter, lambda p: f"http://127.0.0.1:{p[0]}/v2/health/live")
        for i, w in enumerate(workers):
            registry.put_pool(pool(f"w{i}", w.url, models=["demo"]))
        registry.put_pool(
            pool("tfs", front.url, adapter="tfserving", models=["tfdemo"], adapter_server=True)
        )

        def router(ports: tuple[int, ...]) -> ContainerSpec:
            args = ("--host", "127.0.0.1", "--port", str(ports[0]))
            return _mounted(root, images["router"], args, "router")

        entry = start(router, lambda p: f"http://127.0.0.1:{p[0]}/v2/health/ready")
        yield Stack(root, store, workers, tfs, front, entry)


def batch(rows: int, seed: int) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal((rows, 16)).astype(np.float32)


def expected(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    session = ort.InferenceSession(build_demo_model(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["y"], {"x": x})[0])


@pytest.mark.parametrize("model", ["demo", "tfdemo"])
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_through_the_router_container_equals_onnxruntime(
    stack: Stack, model: str, binary: bool
) -> None:
    x = batch(4, seed=int(binary))
    client = triton.InferenceServerClient(url=f"127.0.0.1:{stack.router.port}")
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = triton.InferRequestedOutput("y", binary_data=binary)
    result = client.infer(model, [inp], model_version="1", outputs=[out])
    got = result.as_numpy("y")
    assert got is not None
    np.testing.assert_allclose(got, expected(x), rtol=1e-6, atol=1e-6)


def test_each_model_is_served_by_its_own_pools(stack: Stack) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}
    for model, pools in (("demo", {"w0", "w1"}), ("tfdemo", {"tfs"})):
        answer = httpx.post(f"{stack.router.url}/v2/models/{model}/infer", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-mpfn-pool"] in pools
        assert answer.json()["outputs"][0]["data"] == pytest.approx(
            expected(np.full((1, 16), 0.5, np.float32)).ravel().tolist(), abs=1e-6
        )


def _standin_available(stack: Stack) -> bool:
    answer = httpx.get(f"http://127.0.0.1:{stack.standin.port}/v1/models/tfdemo", timeout=30)
    rows = answer.json().get("model_version_status", []) if answer.status_code == 200 else []
    return any(r["state"] == "AVAILABLE" for r in rows)


def _worker_ready(worker: RunningContainer) -> set[str]:
    rows = httpx.post(
        f"{worker.url}/v2/repository/index", json={"ready": True}, headers=ADMIN, timeout=30
    ).json()
    return {f"{row['name']}:{row['version']}" for row in rows}


def _warmer_job(stack: Stack, images: dict[str, str]) -> WarmPlan:
    """The warmer image's default command, once, in the foreground (a job)."""
    spec = _mounted(stack.root, images["warmer"], (), "warmer")
    env = {**spec.env, "MPFN_WORKER_ADMIN_TOKEN": TOKEN}
    argv = replace(spec, env=env).run_argv(runtime(), detach=False)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return Documents(stack.store).get(PLAN_KEY, WarmPlan)


def test_the_warmer_image_as_a_job_loads_and_unloads_on_container_pools(
    stack: Stack, images: dict[str, str]
) -> None:
    # runs last: it leaves no model loaded
    docs = Documents(stack.store)
    for w in stack.workers:  # start from nothing loaded
        httpx.post(f"{w.url}/v2/repository/models/demo/unload", headers=ADMIN, timeout=30)
    httpx.post(f"{stack.adapter.url}/v2/repository/models/tfdemo/unload", headers=ADMIN, timeout=30)
    docs.upsert(SETTINGS_KEY, WarmSettings(pinned=["demo", "tfdemo"], use_prophet=False))

    plan = _warmer_job(stack, images)

    assert plan.errors == []
    done = {(a.action, a.model, a.pool) for a in plan.actions if a.status == "done"}
    assert done == {("load", "demo", "w0"), ("load", "demo", "w1"), ("load", "tfdemo", "tfs")}
    assert all(_worker_ready(w) == {"demo:1"} for w in stack.workers)
    assert _standin_available(stack)

    # unpinned and unused: usage is kept per minute, so requests of the tests before in this
    # very minute would count as recent use; the router stops (flushing its counts) and the
    # usage history goes
    stack.router.stop()
    for key in stack.store.list(USAGE_PREFIX):
        stack.store.delete(key)
    idle_settings = WarmSettings(
        pinned=[], use_prophet=False, keep_alive_s=0, window_s=1, recent_s=3600
    )
    docs.upsert(SETTINGS_KEY, idle_settings)
    idle = _warmer_job(stack, images)

    assert idle.errors == []
    gone = {(a.action, a.pool) for a in idle.actions if a.status == "done"}
    assert gone == {("unload", "w0"), ("unload", "w1"), ("unload", "tfs")}
    assert all(_worker_ready(w) == set() for w in stack.workers)
    assert not _standin_available(stack)
    assert os.path.isdir(stack.root / "state")
