"""`mpfn cost report` end to end: a local state with pools, a size history and usage
written by the router's counter, read back by the command as a table and as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpfn.functions.router.usage import UsageCounter
from mpfn.registry import Registry
from mpfn.scaling.size import record_size
from mpfn.store import LocalStore
from tests.factories import pool

K8S = {"kind": "k8s", "namespace": "n", "deployment": "d", "max_replicas": 4}


def cost(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"}
    env["COLUMNS"] = "120"
    return subprocess.run(
        [sys.executable, "-m", "mpfn", "--state", str(state), "cost", "report", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def state(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    store = LocalStore(root)
    registry = Registry(store)
    registry.put_pool(pool("llm-gpu", adapter="openai", cost=4.0, site="a", models=["chat"],
                           scaling=K8S))  # fmt: skip
    registry.put_pool(pool("cpu", cost=0.25, site="b", models=["tiny"]))
    now = time.time()
    record_size(store, "llm-gpu", 2, now=now - 3 * 3600, reason="up", by="warmer")
    clock = Clock(now - 1800)
    counter = UsageCounter("r1", clock=clock)
    for _ in range(3):
        counter.add("chat")
        counter.served("chat", "llm-gpu", 100, 40)
    counter.add("tiny")
    counter.served("tiny", "cpu")
    counter.add("chat")  # a stream, answered in the next minute
    assert counter.flush(store) == 2
    clock.t += 60
    counter.served("chat", "llm-gpu", 10, 5)
    counter.add("chat")  # counted, answered by no pool (refused)
    assert counter.flush(store) == 1
    return root


def test_report_as_json_by_model(state: Path) -> None:
    result = cost(state, "--since", "2h", "--by", "model", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["since"] == "2h" and report["by"] == "model"
    groups = {g["name"]: g for g in report["groups"]}
    chat, tiny = groups["chat"], groups["tiny"]
    assert chat["cost"] == pytest.approx(4.0 * 2 * 2, abs=0.01)  # 2 replicas for 2 hours
    assert chat["requests"] == 4 and chat["prompt_tokens"] == 310
    assert chat["completion_tokens"] == 125 and chat["tokens"] == 435
    assert chat["cost_per_1m_tokens"] == pytest.approx(16.0 / 435 * 1e6, rel=1e-3)
    assert chat["cost_per_1m_requests"] == pytest.approx(16.0 / 4 * 1e6, rel=1e-3)
    # two busy minutes at 2 replicas of $4/h are not idle
    assert chat["idle_cost"] == pytest.approx(16.0 - 2 * 2 * 60 / 3600 * 4.0, abs=0.01)
    assert tiny["cost"] == pytest.approx(0.5, abs=0.01) and tiny["requests"] == 1
    assert tiny["tokens"] == 0 and tiny["cost_per_1m_tokens"] is None
    assert report["total"]["cost"] == pytest.approx(16.5, abs=0.01)
    assert report["unattributed_requests"] == 1
    assert any("1 replica assumed" in n and "cpu" in n for n in report["notes"])
    assert any("split across models" in n for n in report["notes"])


def test_report_as_a_table_by_pool_and_site(state: Path) -> None:
    result = cost(state, "--since", "2h")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["llm-gpu", "$16.00", "4"] for line in lines), result.stdout
    assert any(line.split()[:3] == ["cpu", "$0.50", "1"] for line in lines), result.stdout
    assert any(line.split()[:2] == ["total", "$16.50"] for line in lines), result.stdout
    assert "by pool" in result.stdout and "1 replica assumed" in result.stdout
    by_site = json.loads(cost(state, "--by", "site", "--json").stdout)
    assert {g["name"] for g in by_site["groups"]} == {"a", "b"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "error: --since: not a duration: 'yesterday'"),
        (["--by", "region"], "error: --by 'region': expected one of pool, model, site"),
    ],
)
def test_bad_options_are_one_line_errors(state: Path, args: list[str], message: str) -> None:
    result = cost(state, *args)
    assert result.returncode == 1
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
