"""The warm loop of `mpfn up`: its keep-alive applies unless the state's settings say."""

from __future__ import annotations

import threading
from pathlib import Path

from mpfn.registry import Registry
from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.warm.loop import run_forever
from mpfn.warm.plan import PLAN_KEY, SETTINGS_KEY, WarmPlan, WarmSettings


def one_run(store: LocalStore) -> WarmPlan:
    stop = threading.Event()
    thread = threading.Thread(
        target=run_forever,
        args=(Registry(store), stop),
        kwargs={"interval_s": 0.05, "keep_alive_s": 600.0},
    )
    thread.start()
    docs = Documents(store)
    while docs.find(PLAN_KEY, WarmPlan) is None and thread.is_alive():
        stop.wait(0.02)
    stop.set()
    thread.join(30)
    plan = docs.find(PLAN_KEY, WarmPlan)
    assert plan is not None
    return plan


def test_the_states_own_keep_alive_wins(tmp_path: Path) -> None:
    plain = LocalStore(tmp_path / "plain")
    assert one_run(plain).settings.keep_alive_s == 600.0
    configured = LocalStore(tmp_path / "configured")
    Documents(configured).upsert(SETTINGS_KEY, WarmSettings(keep_alive_s=5.0))
    assert one_run(configured).settings.keep_alive_s == 5.0
