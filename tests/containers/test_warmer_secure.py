"""The warmer as deployed (its image, run once as a job, given only `MPFN_STATE` and a
mounted secrets directory) warms three pools that each require credentials, every one
found through the pool documents' `auth` and `tls` references (`file:`):

- an ORT worker serving HTTPS with a private CA, requiring a client certificate, an
  inference token, and a separate admin token for its management API;
- a real Triton server whose repository, statistics and model-config APIs are restricted to
  a management key (`--http-restricted-api`), to which the warmer uploads the model from
  the state's artifacts;
- a real TorchServe with its token authorization on, fronted by the TorchServe adapter
  container, which itself requires a bearer token for inference and an admin token for
  management.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx

from mpfn.containers import ContainerSpec
from mpfn.poolauth.ca import CA
from mpfn.registry import Registry
from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.warm import WarmPlan, WarmSettings
from mpfn.warm.plan import PLAN_KEY, SETTINGS_KEY
from tests.factories import pool
from tests.servers.containers import RunningContainer, as_me, name, runtime, start_container
from tests.servers.mpfn_procs import publish_demo, start_tls_worker
from tests.servers.process import Proc
from tests.servers.torchserve import TorchServeServer, start_torchserve, stop_torchserve
from tests.servers.triton import MANAGEMENT_HEADER, MANAGEMENT_KEY, TritonServer, start_triton

SECRETS = {
    "ort-token": "ort-inference-token-5c1d",
    "ort-admin": "ort-admin-token-8e2f",
    "triton-key": MANAGEMENT_KEY,
    "ts-token": "torchserve-pool-token-3b9a",
    "ts-admin": "torchserve-pool-admin-6f4c",
}


def _ref(secrets: Path, key: str) -> str:
    return f"file:{secrets / key}"


@contextlib.contextmanager
def _backends(root: Path) -> Iterator[tuple[TritonServer, TorchServeServer]]:
    triton = start_triton(root / "triton")
    try:
        torchserve = start_torchserve(root / "torchserve", token_auth=True)
        try:
            yield triton, torchserve
        finally:
            stop_torchserve(torchserve)
    finally:
        triton.proc.stop()


def _ts_adapter(
    images: dict[str, str], root: Path, server: TorchServeServer, secrets: Path
) -> RunningContainer:
    keys = json.loads((root / "torchserve" / "key_file.json").read_text())
    backend_keys = secrets / "ts-backend.json"  # TorchServe's own keys, for the adapter only
    backend_keys.write_text(
        json.dumps(
            {"inference_key": keys["inference"]["key"], "management_key": keys["management"]["key"]}
        )
    )

    def make(ports: tuple[int, ...]) -> ContainerSpec:
        args = ("--host", "127.0.0.1", "--port", str(ports[0]),
                "--backend", server.inference_url, "--management", server.management_url,
                "--option", f"model_store={server.model_store}",
                "--option", f"metrics_url={server.metrics_url}",
                "--credentials-file", str(backend_keys),
                "--token-file", str(secrets / "ts-token"),
                "--admin-token-file", str(secrets / "ts-admin"),
                "--state", f"file://{root / 'state'}", "--cache-dir", "/tmp/cache",
                "--log-level", "warning")  # fmt: skip
        return as_me(
            ContainerSpec(
                name=name("adapter-torchserve"),
                image=images["adapter:torchserve"],
                args=args,
                volumes=((str(root), str(root)),),
            )
        )

    return start_container(make, ready=lambda p: f"http://127.0.0.1:{p[0]}/v2/health/live")


def _warmer_job(images: dict[str, str], root: Path) -> subprocess.CompletedProcess[str]:
    """The warmer image's default command, once, as a job with a read-only root file
    system: its only configuration is the state URL and the mounted state and secrets."""
    spec = as_me(
        ContainerSpec(
            name=name("warmer"),
            image=images["warmer"],
            env={"MPFN_STATE": f"file://{root / 'state'}"},
            volumes=((str(root), str(root)),),
            read_only=True,
            tmpfs=("/tmp",),
        )
    )
    argv = spec.run_argv(runtime(), detach=False)
    return subprocess.run(argv, capture_output=True, text=True, timeout=400, check=False)


def _ready(url: str, headers: dict[str, str], verify: ssl.SSLContext | bool = True) -> bool:
    return httpx.get(url, headers=headers, verify=verify, timeout=30).status_code == 200


def test_a_deployed_warmer_warms_ort_triton_and_torchserve_pools_behind_credentials(
    images: dict[str, str], tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "state")
    publish_demo(store, tmp_path)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for key, value in SECRETS.items():
        (secrets / key).write_text(value + "\n")
    ca = CA(tmp_path / "pki")
    server, client = ca.issue("server"), ca.issue("warmer", server=False)
    registry = Registry(store)
    with contextlib.ExitStack() as running:
        ort: Proc = start_tls_worker(
            store, tmp_path, "ort", server.cert, server.key,
            "--tls-client-ca", str(ca.pem), "--token-file", str(secrets / "ort-token"),
            "--admin-token-file", str(secrets / "ort-admin"),
        )  # fmt: skip
        running.callback(ort.stop)
        triton, torchserve = running.enter_context(_backends(tmp_path))
        adapter = _ts_adapter(images, tmp_path, torchserve, secrets)
        running.callback(adapter.stop)

        mtls = ssl.create_default_context(cafile=ca.pem)
        mtls.load_cert_chain(client.cert, client.key)
        ort_url = f"https://127.0.0.1:{ort.port}"
        ort_admin = {"Authorization": f"Bearer {SECRETS['ort-admin']}"}
        unloaded = httpx.post(f"{ort_url}/v2/repository/models/demo/unload", headers=ort_admin,
                              verify=mtls, timeout=30)  # fmt: skip
        assert unloaded.status_code == 200, unloaded.text  # it preloads demo; start cold

        registry.put_pool(pool(
            "ort", ort_url, models=["demo"],
            auth={"type": "bearer", "token": _ref(secrets, "ort-token"),
                  "admin_token": _ref(secrets, "ort-admin")},
            tls={"ca": f"file:{ca.pem}", "cert": f"file:{client.cert}",
                 "key": f"file:{client.key}"},
        ))  # fmt: skip
        registry.put_pool(pool(
            "triton", triton.url, adapter="triton", models=["demo"],
            options={"backend": "python", "metrics_url": triton.metrics_url},
            auth={"type": "header", "header": MANAGEMENT_HEADER,
                  "token": _ref(secrets, "triton-key")},
        ))  # fmt: skip
        registry.put_pool(pool(
            "torchserve", adapter.url, adapter="torchserve", adapter_server=True,
            models=["demo"],
            auth={"type": "bearer", "token": _ref(secrets, "ts-token"),
                  "admin_token": _ref(secrets, "ts-admin")},
        ))  # fmt: skip
        Documents(store).upsert(SETTINGS_KEY, WarmSettings(pinned=["demo"], use_prophet=False))

        done = _warmer_job(images, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        plan = Documents(store).get(PLAN_KEY, WarmPlan)
        assert plan.errors == [], plan.errors
        loaded = {(a.action, a.model, a.pool) for a in plan.actions if a.status == "done"}
        assert loaded == {("load", "demo", p) for p in ("ort", "triton", "torchserve")}

        # each pool says so itself, asked with its own credentials
        assert _ready(f"{ort_url}/v2/models/demo/versions/1/ready",
                      {"Authorization": f"Bearer {SECRETS['ort-token']}"}, mtls)  # fmt: skip
        assert _ready(f"{triton.url}/v2/models/demo.1/ready", {})  # Triton: <name>.<version>
        assert _ready(f"{adapter.url}/v2/models/demo/versions/1/ready",
                      {"Authorization": f"Bearer {SECRETS['ts-token']}"})  # fmt: skip
        output = done.stdout + done.stderr + adapter.logs()
        for secret in SECRETS.values():
            assert secret not in output
