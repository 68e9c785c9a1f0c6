"""Secrets never reach the logs: API keys, worker admin tokens, store credentials.

A router (debug logging, API keys required) reads its state from S3 on a moto server
with a secret access key; a worker (debug logging) guards its management API with an
admin token. The run exercises the paths that log: accepted and refused API keys (also
sent in other headers), refused and accepted admin tokens, a store outage (refresh and
usage-flush failures) and shutdown. Afterwards no secret, nor any credential presented
along the way, appears in either process's log.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from pathlib import Path

import httpx
from pydantic import HttpUrl

from mpfn.adapters.base import AdapterConfig
from mpfn.adapters.ort import OrtAdapter
from mpfn.auth import issue_key, key_id_of
from mpfn.documents import ModelVersion, Pool
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.factories import pool
from tests.reliability.load import load
from tests.reliability.stack import DEMO_BODY, MotoState, count_lines, log_text, signal_proc, upsert
from tests.servers.mpfn_procs import publish_demo, start_router, start_worker
from tests.servers.process import Proc, wait_until


async def manage(worker: Proc, token: str, model: ModelVersion) -> None:
    p = Pool(id="w1", cloud="local", adapter="ort", endpoint=HttpUrl(worker.url))
    adapter = OrtAdapter(AdapterConfig(pool=p, credentials={"admin_token": token}))
    try:
        await adapter.load(model)
        await adapter.stats()
    finally:
        await adapter.aclose()


def test_no_secret_appears_in_router_or_worker_logs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    store_secret = "mpfn-store-secret-" + secrets.token_hex(16)
    admin_token = secrets.token_urlsafe(32)
    wrong_token = secrets.token_urlsafe(32)
    api_key, key_doc = issue_key("ci", models=["demo"])
    wrong_key = api_key[: -len("secretsecret")] + "secretsecret"  # right id, wrong secret
    stranger = "mpfn_000000000000_" + secrets.token_urlsafe(32)  # unknown id
    moto = MotoState(logs, "mpfn-store-access", store_secret)
    procs: list[Proc] = []
    try:
        local = LocalStore(tmp_path / "state")
        model = publish_demo(local, tmp_path)
        worker = start_worker(
            local,
            logs,
            "w1",
            "--log-level",
            "debug",
            env={"MPFN_WORKER_ADMIN_TOKEN": admin_token},
        )
        procs.append(worker)
        upsert(moto.store(), [model, pool("w1", worker.url)])
        Documents(moto.store()).upsert(key_doc.key, key_doc)
        router = start_router(
            moto.url,
            logs,
            cwd=moto.project_dir(tmp_path / "project"),
            log_level="debug",
            settings={"auth": "keys"},
            env=moto.env(),
        )
        procs.append(router)

        # API keys: accepted, refused, and sent where no key belongs.
        good = load(router.url, total=40, headers={"Authorization": f"Bearer {api_key}"})
        assert not good.failures, good.describe_failures()
        with httpx.Client(base_url=router.url) as client:
            for presented in (wrong_key, stranger, api_key + "x", f"Basic {api_key}"):
                value = presented if presented.startswith("Basic") else f"Bearer {presented}"
                reply = client.post(
                    "/v2/models/demo/infer", json=DEMO_BODY, headers={"Authorization": value}
                )
                assert reply.status_code == 401, reply.text
                assert presented not in reply.text
            reply = client.post(
                "/v2/models/demo/infer",
                json=DEMO_BODY,
                headers={
                    "Authorization": f"Bearer {api_key}",
                    "x-api-key": api_key,
                    "Cookie": f"session={api_key}",
                    "x-mpfn-route-key": api_key,
                },
            )
            assert reply.status_code == 200

        # Admin tokens: refused, then accepted through the adapter.
        refused = httpx.post(
            f"{worker.url}/v2/repository/index", headers={"Authorization": f"Bearer {wrong_token}"}
        )
        assert refused.status_code == 401 and wrong_token not in refused.text
        asyncio.run(manage(worker, admin_token, model))

        # The store goes away: refreshes and usage flushes fail and are logged.
        signal_proc(moto.proc, signal.SIGKILL)
        moto.proc.popen.wait(10)
        wait_until(
            lambda: count_lines(log_text(router), "state refresh failed") >= 1, 30, "outage seen"
        )
        after = load(router.url, total=20, headers={"Authorization": f"Bearer {api_key}"})
        assert not after.failures, after.describe_failures()
    finally:
        for proc in reversed(procs):
            proc.stop()
        moto.stop()

    router_log, worker_log = log_text(router), log_text(worker)
    assert "state refresh failed" in router_log and "usage flush failed" in router_log
    secret_values = {
        "store secret key": store_secret,
        "API key": api_key,
        "API key secret": key_id_of(api_key)[1],
        "wrong API key": wrong_key,
        "unknown API key": stranger,
        "admin token": admin_token,
        "wrong admin token": wrong_token,
    }
    for what, value in secret_values.items():
        assert value not in router_log, f"{what} in the router log"
        assert value not in worker_log, f"{what} in the worker log"
