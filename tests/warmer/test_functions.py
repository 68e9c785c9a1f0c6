"""The warmer's function entry points: Lambda handler and `python -m mpfn.functions.warmer`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mpfn.functions.warmer.__main__ import main
from mpfn.functions.warmer.entry import run_from_env
from mpfn.functions.warmer.lambda_handler import make_handler
from mpfn.store import LocalStore
from mpfn.warm.plan import PLAN_KEY, SETTINGS_KEY
from tests.warmer.helpers import NOW, Catalog, add_models, hourly, write_usage

SCHEDULED = {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}


def _run(args: list[str], state: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"} | {"MPFN_STATE": state}
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_lambda_handler_runs_the_warmer_on_a_scheduled_event(
    warm_store: LocalStore, catalog: Catalog
) -> None:
    add_models(warm_store, catalog, ["busy"])
    write_usage(warm_store, "busy", hourly(NOW, 24, 5))
    summary = make_handler(str(warm_store.root))(SCHEDULED, None)
    assert summary["ok"] is True and summary["event"] == "Scheduled Event"
    assert summary["applied"] is True and summary["models"] == 1
    assert warm_store.list(PLAN_KEY) == [PLAN_KEY]
    assert make_handler(str(warm_store.root))({"dry_run": True}, None)["applied"] is False
    json.dumps(summary)  # a Lambda response must be JSON


def test_a_failed_run_is_reported_never_raised(warm_store: LocalStore) -> None:
    warm_store.put(SETTINGS_KEY, b'{"window_s": -1}')
    summary = run_from_env(state=str(warm_store.root))
    assert summary["ok"] is False
    assert "config/warmer.json" in summary["error"] and "window_s" in summary["error"]
    assert main(["--state", str(warm_store.root)]) == 1
    broken = make_handler("s3://")(SCHEDULED, None)  # not even a valid URL
    assert broken["ok"] is False and "missing bucket" in broken["error"]


def test_job_entry_point_runs_once_and_exits_zero(warm_store: LocalStore, catalog: Catalog) -> None:
    add_models(warm_store, catalog, ["idle"])
    proc = _run(["-m", "mpfn.functions.warmer", "--dry-run"], str(warm_store.root))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["applied"] is False and summary["models"] == 1
    assert warm_store.list(PLAN_KEY) == []  # a dry run writes nothing
