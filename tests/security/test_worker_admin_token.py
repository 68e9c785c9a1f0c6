"""The worker's management API requires its admin token when one is configured.

Real worker processes: one given the token in a file (`--admin-token-file`), one in the
environment (`MPFN_WORKER_ADMIN_TOKEN`). Without the token, with a wrong one or with
another scheme, every `/v2/repository/...` request is refused with 401 and a JSON error
and changes nothing; inference, health, metadata and metrics stay open. The `ort` adapter
sends the token from its pool credentials. A worker that would listen beyond loopback
with an open management API says so when it starts.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import HttpUrl

from mpfn.adapters.base import AdapterConfig, AdapterError
from mpfn.adapters.ort import OrtAdapter
from mpfn.adapters.ort_worker.guard import exposure_warning, is_loopback
from mpfn.documents import ModelVersion, Pool
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.reliability.stack import DEMO_BODY
from tests.servers.mpfn_procs import publish_demo, start_worker
from tests.servers.process import PYTHON, Proc

MANAGEMENT = [
    ("/v2/repository/index", {}),
    ("/v2/repository/models/demo/load", {}),
    ("/v2/repository/models/demo/unload", {"parameters": {"version": "1"}}),
]


class Guarded:
    def __init__(self, root: Path) -> None:
        self.token = secrets.token_urlsafe(32)
        self.store = LocalStore(root / "state")
        publish_demo(self.store, root)
        token_file = root / "admin-token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        logs = root / "logs"
        self.by_file = start_worker(
            self.store, logs, "by-file", "--admin-token-file", str(token_file)
        )
        try:
            self.by_env = start_worker(
                self.store, logs, "by-env", env={"MPFN_WORKER_ADMIN_TOKEN": self.token}
            )
        except BaseException:
            self.by_file.stop()
            raise

    @property
    def workers(self) -> list[Proc]:
        return [self.by_file, self.by_env]

    def close(self) -> None:
        for proc in self.workers:
            proc.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    g = Guarded(tmp_path_factory.mktemp("guarded"))
    try:
        yield g
    finally:
        g.close()


def assert_refused(reply: httpx.Response) -> None:
    assert reply.status_code == 401, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert set(reply.json()) == {"error"}
    assert reply.headers["www-authenticate"].startswith("Bearer ")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer {token} {token}",
        "Bearer wrong-token",
        "Basic YWRtaW46YWRtaW4=",
        "Token {token}",
        "Bearer {token}x",
        "Bearer {short}",
        "{token}",
    ],
)
def test_management_api_refuses_requests_without_the_token(
    guarded: Guarded, authorization: str | None
) -> None:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(
            token=guarded.token, short=guarded.token[:-1]
        )
    for worker in guarded.workers:
        for path, body in MANAGEMENT:
            assert_refused(httpx.post(f"{worker.url}{path}", json=body, headers=headers))
        assert_refused(httpx.get(f"{worker.url}/v2/repository/index", headers=headers))
        # Nothing changed: the model is still loaded.
        assert httpx.get(f"{worker.url}/v2/models/demo/ready").status_code == 200


def test_management_api_accepts_the_token_and_the_rest_stays_open(guarded: Guarded) -> None:
    for worker in guarded.workers:
        auth = {"Authorization": f"bearer {guarded.token}"}  # the scheme is case-insensitive
        index = httpx.post(f"{worker.url}/v2/repository/index", headers=auth)
        assert index.status_code == 200 and index.json()[0]["state"] == "READY"
        unload = httpx.post(f"{worker.url}/v2/repository/models/demo/unload", headers=auth)
        assert unload.status_code == 200 and unload.json()["unloaded"] == ["1"]
        load = httpx.post(f"{worker.url}/v2/repository/models/demo/load", headers=auth)
        assert load.status_code == 200
        # Inference, health, metadata and metrics need no token.
        assert httpx.post(f"{worker.url}/v2/models/demo/infer", json=DEMO_BODY).status_code == 200
        for path in ("/v2/health/ready", "/v2", "/v2/models/demo", "/metrics"):
            assert httpx.get(f"{worker.url}{path}").status_code == 200, path


def adapter(worker: Proc, credentials: dict[str, str]) -> OrtAdapter:
    pool = Pool(id="p", cloud="local", adapter="ort", endpoint=HttpUrl(worker.url))
    return OrtAdapter(AdapterConfig(pool=pool, credentials=credentials))


async def manage(worker: Proc, credentials: dict[str, str], model: ModelVersion) -> list[str]:
    client = adapter(worker, credentials)
    try:
        await client.unload(model)
        await client.load(model)
        stats = await client.stats()
        return list(stats.loaded)
    finally:
        await client.aclose()


def test_ort_adapter_sends_the_admin_token_from_its_credentials(guarded: Guarded) -> None:
    model = Documents(guarded.store).get("models/demo/1.json", ModelVersion)
    worker = guarded.by_file
    loaded = asyncio.run(manage(worker, {"admin_token": guarded.token}, model))
    assert loaded == ["demo:1"]
    with pytest.raises(AdapterError) as refused:
        asyncio.run(manage(worker, {}, model))
    assert refused.value.status == 502 and "credentials" in refused.value.message
    assert guarded.token not in refused.value.message


def run_worker_until_exit(*flags: str, env: dict[str, str] | None = None) -> str:
    """Start a worker that stops before it listens (its state URL cannot be opened)."""
    argv = [PYTHON, "-m", "mpfn.adapters.ort_worker", "--state", "ftp://nowhere", *flags]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 2, done.stderr
    return done.stderr


def test_worker_warns_when_it_would_expose_an_open_management_api(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-admin-token")
    env = {k: v for k, v in os.environ.items() if k != "MPFN_WORKER_ADMIN_TOKEN"}
    assert "without an admin token" in run_worker_until_exit("--host", "0.0.0.0", env=env)
    assert "without an admin token" in run_worker_until_exit("--host", "10.1.2.3", env=env)
    quiet = run_worker_until_exit("--host", "0.0.0.0", "--admin-token-file", str(token_file))
    assert "without an admin token" not in quiet and "s3cr3t-admin-token" not in quiet
    assert "without an admin token" not in run_worker_until_exit("--host", "127.0.0.1", env=env)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host) and exposure_warning(host, guarded=False) is None
    for host in ("0.0.0.0", "::", "10.0.0.5", "worker.internal"):
        assert not is_loopback(host) and exposure_warning(host, guarded=False)
        assert exposure_warning(host, guarded=True) is None


@pytest.mark.parametrize("content", ["", "  \n"])
def test_an_empty_or_missing_token_file_stops_the_worker(tmp_path: Path, content: str) -> None:
    empty = tmp_path / "empty"
    empty.write_text(content)
    for path in (empty, tmp_path / "missing"):
        argv = [PYTHON, "-m", "mpfn.adapters.ort_worker", "--state", str(tmp_path)]
        done = subprocess.run(
            [*argv, "--admin-token-file", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and "admin token file" in done.stderr, done.stderr
