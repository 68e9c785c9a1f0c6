"""The Kubernetes manifests `mpfn deploy --target k8s` renders, run container by container
with podman (no cluster can run here): every pool and router container spec, with the
command, args, env, user and volumes the manifest gives it, serves.

Pools: two `ort` pools (the worker image) and a `tfserving` pool whose pod is the TF
Serving stand-in (NOT TensorFlow Serving) as its backend container beside the TF Serving
adapter container. Ports are renumbered to free host ports (all pods share the host's
network here); the state is a local directory, bind-mounted where a cluster would give
S3 or GCS credentials.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mpfn.deploy.k8s_manifests import Images, render
from mpfn.deploy.podman import pod_specs, readiness
from mpfn.deploy.spec import DeployConfig
from mpfn.registry import Registry
from mpfn.store import LocalStore
from tests.factories import pool
from tests.servers.containers import RunningContainer, run_ready
from tests.servers.mpfn_procs import publish_demo
from tests.servers.ports import unused_port

POOLS = [
    {"id": "ort-a", "port": 8000},
    {"id": "ort-b", "port": 8001},
    {
        "id": "tf-a",
        "adapter": "tfserving",
        "port": 8002,
        "backend_port": 8501,
        "args": ["--rest_api_port", "8501", "--port", "8500"],
        "adapter_args": ["--option", "grpc_target=127.0.0.1:8500"],
    },
]


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    """A state directory outside pytest's (which only root may enter)."""
    root = Path(tempfile.mkdtemp(prefix="mpfn-k8s-"))
    try:
        store = LocalStore(root / "state")
        publish_demo(store, root)
        yield root / "state"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def open_to_all(root: Path) -> None:
    """Let the images' non-root user (uid 10001) read and write the state."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)


def deployments(images: dict[str, str], state: str) -> dict[str, dict[str, Any]]:
    config = DeployConfig.model_validate(
        {
            "router": {"image": images["router"]},
            "images": {
                "worker": images["worker"],
                "adapters": {"tfserving": images["adapter:tfserving"]},
            },
            "pools": [
                {**p, "image": images["tfserving-standin"]} if p["id"] == "tf-a" else p
                for p in POOLS
            ],
        }
    )
    worker = images["worker"]
    standin = images["tfserving-standin"]
    pools = {"ort-a": worker, "ort-b": worker, "tf-a": standin}
    adapters = {"tfserving": images["adapter:tfserving"]}
    files = render(
        config,
        state,
        Images(images["router"], None, pools, worker=worker, adapters=adapters),
    )
    out = {}
    for text in files.values():
        doc = yaml.safe_load(text)
        if doc.get("kind") == "Deployment":
            out[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
    return out


@pytest.fixture(scope="module")
def pods(images: dict[str, str], state_dir: Path) -> Iterator[dict[str, Any]]:
    state = f"file://{state_dir}"
    specs = deployments(images, state)
    assert set(specs) == {"mpfn-router", "mpfn-pool-ort-a", "mpfn-pool-ort-b", "mpfn-pool-tf-a"}
    ports = {old: unused_port() for old in (8000, 8001, 8002, 8500, 8501, 8080)}
    registry = Registry(LocalStore(state_dir))
    for p in POOLS:
        fronted = {"adapter": "tfserving", "adapter_server": True} if "adapter" in p else {}
        endpoint = f"http://127.0.0.1:{ports[int(str(p['port']))]}"
        registry.put_pool(pool(str(p["id"]), endpoint, **fronted))  # type: ignore[arg-type]
    open_to_all(state_dir.parent)
    mount = ((str(state_dir), str(state_dir)),)
    running: dict[str, RunningContainer] = {}
    with contextlib.ExitStack() as stack:
        # pools first, backends before the adapters in front of them; the router last
        order = sorted(specs, key=lambda name: name == "mpfn-router")
        for name in order:
            pod = specs[name]
            prefix = f"mpfn-k8s-{os.getpid()}-{name}"
            translated = pod_specs(pod, prefix=prefix, ports=ports)
            containers = list(zip(pod["containers"], translated, strict=True))
            for container, spec in sorted(containers, key=lambda c: c[0]["name"] != "backend"):
                probe = readiness(container, ports)
                url = f"http://127.0.0.1:{probe[0]}{probe[1]}" if probe else None
                if container["name"] == "backend":  # the stand-in has no readiness probe
                    url = f"http://127.0.0.1:{ports[8501]}/v1/models/none"
                assert url is not None, f"{name}/{container['name']} has no readiness probe"
                started = run_ready(replace(spec, volumes=(*spec.volumes, *mount)), url)
                stack.callback(started.stop)
                running[f"{name}/{container['name']}"] = started
        yield {"specs": specs, "ports": ports, "running": running}


def test_every_container_of_every_pod_serves(pods: dict[str, Any]) -> None:
    assert set(pods["running"]) == {
        "mpfn-pool-ort-a/worker",
        "mpfn-pool-ort-b/worker",
        "mpfn-pool-tf-a/backend",
        "mpfn-pool-tf-a/adapter",
        "mpfn-router/router",
    }
    for container in pods["running"].values():
        assert container.container.running()


def test_the_pod_specs_run_as_the_manifests_say(pods: dict[str, Any]) -> None:
    worker = pods["specs"]["mpfn-pool-ort-a"]["containers"][0]
    assert worker["args"][:4] == ["--host", "0.0.0.0", "--port", "8000"]
    assert worker["securityContext"]["runAsNonRoot"] is True
    assert "MPFN_STATE" in {e["name"] for e in worker["env"]}


def test_the_router_container_routes_to_the_worker_pods(pods: dict[str, Any]) -> None:
    router = f"http://127.0.0.1:{pods['ports'][8080]}"
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}
    answer = httpx.post(f"{router}/v2/models/demo/infer", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-mpfn-pool"] in {"ort-a", "ort-b"}


def test_the_tfserving_pod_answers_the_pool_protocol(pods: dict[str, Any]) -> None:
    adapter = f"http://127.0.0.1:{pods['ports'][8002]}"
    assert httpx.get(f"{adapter}/v2/health/ready", timeout=30).status_code == 200
    assert httpx.get(f"{adapter}/v2", timeout=30).status_code == 200
