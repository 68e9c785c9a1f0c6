"""A Kubernetes pool on TLS requiring a client certificate and a token, from the manifests
`mpfn deploy --target k8s` renders, run container by container with podman (no cluster
can run here): the pool's worker, the router and the warmer CronJob's container each get
their Secret volumes as host directories holding the files the kubelet would project.

The pool is registered with the `mpfn pools add` command the deploy prints (only its
endpoint changed to the host port the pod got); the warmer job loads the model through the
pool's admin token and client certificate, and the router routes to it over mTLS with the
token; a caller without those credentials gets nothing from the pool.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mpfn.containers import ContainerSpec
from mpfn.deploy.k8s import register_command
from mpfn.deploy.k8s_manifests import Images, render
from mpfn.deploy.podman import pod_specs
from mpfn.deploy.spec import DeployConfig
from mpfn.poolauth.ca import CA
from mpfn.registry import Registry
from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.warm import WarmPlan, WarmSettings
from mpfn.warm.plan import PLAN_KEY, SETTINGS_KEY
from tests.deploy.conftest import run_cli
from tests.servers.containers import run_ready, runtime
from tests.servers.mpfn_procs import publish_demo
from tests.servers.ports import unused_port

TOKEN = "k8s-pool-token-0a7e"
ADMIN = "k8s-pool-admin-4d1b"
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}
POOL = {"id": "secure", "tls_secret": "secure-tls", "client_certs": True,
        "token_secret": "secure-tokens"}  # fmt: skip


def _write(directory: Path, files: dict[str, bytes]) -> str:
    """A Secret volume as the kubelet projects it: one file per key."""
    directory.mkdir(parents=True)
    for key, value in files.items():
        (directory / key).write_bytes(value)
    return str(directory)


def _open_to_all(root: Path) -> None:
    """Let the images' non-root user (uid 10001) read and write what the test wrote."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)


@pytest.fixture(scope="module")
def site(images: dict[str, str]) -> Iterator[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="mpfn-k8s-tls-"))  # the images' user must enter it
    try:
        store = LocalStore(root / "state")
        publish_demo(store, root)
        ca = CA(root / "pki")
        server, client = ca.issue("server"), ca.issue("mpfn-client", server=False)
        pem = ca.pem.read_bytes()
        cert = {"tls.crt": client.cert.read_bytes(), "tls.key": client.key.read_bytes()}
        dirs = {
            "pool-tls": _write(root / "secrets/pool-tls", {
                "tls.crt": server.cert.read_bytes(), "tls.key": server.key.read_bytes(),
                "ca.crt": pem}),
            "pool-tokens": _write(root / "secrets/pool-tokens", {
                "tokens": f"{TOKEN}\n".encode(), "admin-token": ADMIN.encode()}),
            "router-keys": _write(root / "secrets/router-keys", {
                "ca.crt": pem, "token": TOKEN.encode()}),
            "warmer-keys": _write(root / "secrets/warmer-keys", {
                "ca.crt": pem, "token": TOKEN.encode(), "admin-token": ADMIN.encode()}),
            "client-tls": _write(root / "secrets/client-tls", cert),
        }  # fmt: skip
        _open_to_all(root)
        config = DeployConfig.model_validate(
            {"pools": [POOL], "k8s": {"client_tls_secret": "mpfn-client"}}
        )
        files = render(config, f"file://{root / 'state'}", Images(
            images["router"], images["warmer"], {}, worker=images["worker"]))  # fmt: skip
        docs = [yaml.safe_load(t) for n, t in files.items() if n != "kustomization.yaml"]
        pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs
                if d["kind"] == "Deployment"}  # fmt: skip
        [cron] = [d for d in docs if d["kind"] == "CronJob"]
        pods["mpfn-warmer"] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        yield {"root": root, "store": store, "ca": ca, "client": client, "dirs": dirs,
               "pods": pods, "command": register_command(config, config.pools[0])}  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _specs(site: dict[str, Any], pod: str, keys: str, ports: dict[int, int]) -> ContainerSpec:
    dirs = site["dirs"]
    volume_dirs = {"pool-tls": dirs["pool-tls"], "pool-tokens": dirs["pool-tokens"],
                   "pool-keys-0": dirs[keys], "client-tls": dirs["client-tls"]}  # fmt: skip
    [spec] = pod_specs(site["pods"][pod], prefix=f"mpfn-k8s-tls-{os.getpid()}-{pod}",
                       ports=ports, volume_dirs=volume_dirs)  # fmt: skip
    state = str(site["root"] / "state")
    return replace(spec, volumes=(*spec.volumes, (state, state)))


def _mtls(site: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=site["ca"].pem)
    context.load_cert_chain(site["client"].cert, site["client"].key)
    return context


def test_a_tls_pool_from_the_manifests_is_warmed_and_routed_to_with_its_credentials(
    site: dict[str, Any],
) -> None:
    ports = {8000: unused_port(), 8080: unused_port()}
    pool_url = f"https://127.0.0.1:{ports[8000]}"
    mtls = _mtls(site)
    with contextlib.ExitStack() as running:
        worker_spec = _specs(site, "mpfn-pool-secure", "router-keys", ports)
        worker = run_ready(worker_spec, f"{pool_url}/v2/health/ready", verify=mtls)
        running.callback(worker.stop)

        # the command deploy prints, with the pod's host port for the in-cluster name
        command = re.sub(r"--endpoint \S+", f"--endpoint {pool_url}", site["command"])
        args = shlex.split(command)[1:]
        done = run_cli(site["root"], "--state", str(site["root"] / "state"), *args,
                       "--models", "demo")  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        [registered] = Registry(site["store"]).pools()
        assert registered.auth is not None and registered.auth.admin_token is not None
        assert registered.tls is not None and registered.tls.cert is not None

        Documents(site["store"]).upsert(
            SETTINGS_KEY, WarmSettings(pinned=["demo"], use_prophet=False)
        )
        _open_to_all(site["root"])
        warmer = _specs(site, "mpfn-warmer", "warmer-keys", ports)
        argv = warmer.run_argv(runtime(), detach=False)
        job = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        assert job.returncode == 0, job.stdout + job.stderr
        plan = Documents(site["store"]).get(PLAN_KEY, WarmPlan)
        assert plan.errors == []
        assert [(a.action, a.pool, a.status) for a in plan.actions] == [("load", "secure", "done")]

        router_spec = _specs(site, "mpfn-router", "router-keys", ports)
        router_url = f"http://127.0.0.1:{ports[8080]}"
        router = run_ready(router_spec, f"{router_url}/v2/health/ready")
        running.callback(router.stop)
        answer = httpx.post(f"{router_url}/v2/models/demo/infer", json=BODY, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-mpfn-pool"] == "secure"

        token = {"Authorization": f"Bearer {TOKEN}"}
        infer = f"{pool_url}/v2/models/demo/infer"
        assert httpx.post(infer, json=BODY, headers=token, verify=mtls).status_code == 200
        assert httpx.post(infer, json=BODY, verify=mtls).status_code == 401
        with pytest.raises(httpx.HTTPError):  # no client certificate: no handshake
            httpx.post(
                infer,
                json=BODY,
                headers=token,
                verify=ssl.create_default_context(cafile=site["ca"].pem),
            )
        logs = worker.logs() + router.logs() + job.stdout + job.stderr
        assert TOKEN not in logs and ADMIN not in logs
