"""The warmer image run as AWS Lambda runs it: with the ImageConfig every AWS deploy path
sets (`python3 -m awslambdaric` calling the warmer's handler), talking to the Runtime API
stand-in (`tests.servers.lambda_runtime`, NOT AWS Lambda) through
`AWS_LAMBDA_RUNTIME_API`, with Lambda's read-only root file system and a writable /tmp.

The stand-in hands the function the event the deployed schedule sends; the handler runs
one warmer pass against a bind-mounted local state with the demo model pinned and one ORT
worker pool, and posts its summary back as the invocation's response.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx

from mpfn.containers import ContainerSpec
from mpfn.containers import run as run_container
from mpfn.images.catalog import WARMER_LAMBDA_COMMAND, WARMER_LAMBDA_ENTRYPOINT
from mpfn.registry import Registry
from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.warm import WarmPlan, WarmSettings
from mpfn.warm.plan import PLAN_KEY, SETTINGS_KEY
from tests.factories import pool
from tests.servers.containers import as_me, name, runtime
from tests.servers.lambda_runtime import lambda_runtime_api
from tests.servers.mpfn_procs import publish_demo, start_worker
from tests.servers.process import stopping

TOKEN = "warmer-lambda-admin-token-for-tests"
#: What the schedule of every AWS deploy path hands the warmer function.
SCHEDULED_EVENT = {"source": "mpfn.scheduler"}


def _demo_ready(worker_url: str) -> bool:
    """The worker's own answer: is demo version 1 loaded and ready?"""
    return httpx.get(f"{worker_url}/v2/models/demo/versions/1/ready", timeout=30).status_code == 200


def test_the_warmer_image_answers_a_scheduled_invocation_through_the_runtime_api(
    images: dict[str, str], tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "state")
    publish_demo(store, tmp_path)
    token = tmp_path / "admin-token"
    token.write_text(TOKEN)
    flags = ("--admin-token-file", str(token))
    with contextlib.ExitStack() as running:
        worker = running.enter_context(
            stopping(start_worker(store, tmp_path / "logs", "ort-worker", *flags, preload=None))
        )
        assert not _demo_ready(worker.url)
        Registry(store).put_pool(pool("w0", worker.url, models=["demo"]))
        Documents(store).upsert(SETTINGS_KEY, WarmSettings(pinned=["demo"], use_prophet=False))

        api = running.enter_context(lambda_runtime_api())
        spec = ContainerSpec(
            name=name("warmer-lambda"),
            image=images["warmer"],
            entrypoint=WARMER_LAMBDA_ENTRYPOINT,
            args=WARMER_LAMBDA_COMMAND,
            env={
                "AWS_LAMBDA_RUNTIME_API": api.address,
                "MPFN_STATE": store.url,
                "MPFN_WORKER_ADMIN_TOKEN": TOKEN,
            },
            volumes=((str(tmp_path), str(tmp_path)),),
            read_only=True,
            tmpfs=("/tmp",),
        )
        container = run_container(as_me(spec), runtime())
        running.callback(container.stop, 2)  # the client waits for the next event forever

        try:
            outcome = api.invoke(SCHEDULED_EVENT, timeout_s=240, alive=container.running)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{container.logs(80)}") from exc

        assert outcome.kind == "response", outcome.body
        summary = outcome.json()
        assert summary["ok"] is True, summary
        assert summary["event"] == "mpfn.scheduler"
        assert summary["state"] == store.url
        assert summary["applied"] is True and summary["warm"] == ["demo"]
        assert (summary["loads"], summary["failed"], summary["errors"]) == (1, 0, [])

        plan = Documents(store).get(PLAN_KEY, WarmPlan)
        assert plan.applied and plan.errors == []
        assert [(m.model, m.warm, m.reason) for m in plan.models] == [("demo", True, "pinned")]
        done = [(a.action, a.model, a.version, a.pool) for a in plan.actions if a.status == "done"]
        assert done == [("load", "demo", "1", "w0")]
        assert [(p.pool, p.desired) for p in plan.pools] == [("w0", {"demo": 1})]
        assert _demo_ready(worker.url)
        assert api.init_errors == []
