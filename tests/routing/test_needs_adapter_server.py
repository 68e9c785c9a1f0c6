"""Pools whose backend does not speak v2 (TF Serving, TorchServe) are candidates only behind
an adapter server: the filter says why not, `mpfn route explain` shows it, and
`mpfn pools add` warns when such a pool is added without one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpfn.demo import demo_model_version
from mpfn.registry import Registry
from mpfn.routing import Limits, filter_pools
from mpfn.routing.breaker import BreakerConfig
from mpfn.routing.compat import NEEDS_ADAPTER_SERVER, missing_adapter_server
from mpfn.store import LocalStore
from tests.factories import pool
from tests.routing.factories import model

TFS_GAP = "tfserving pool needs an adapter server in front (adapter_server: true)"


def test_the_table_names_the_kinds_without_v2() -> None:
    assert {"tfserving", "torchserve"} == NEEDS_ADAPTER_SERVER
    assert missing_adapter_server("tfserving", False) == TFS_GAP
    assert missing_adapter_server("torchserve", False) == (
        "torchserve pool needs an adapter server in front (adapter_server: true)"
    )
    for kind in ("tfserving", "torchserve"):
        assert missing_adapter_server(kind, True) is None
    for kind in ("ort", "triton", "openai", "rocm"):  # v2 (or OpenAI) natively, plug-ins
        assert missing_adapter_server(kind, False) is None
        assert missing_adapter_server(kind, True) is None


@pytest.mark.parametrize("kind", ["tfserving", "torchserve"])
def test_the_filter_keeps_only_fronted_pools(kind: str) -> None:
    pools = [
        pool("bare", adapter=kind, models=["m"]),
        pool("fronted", adapter=kind, models=["m"], adapter_server=True),
        pool("ort"),
    ]
    kept, excluded = filter_pools(model(), pools, Limits(), {}, 0.0, BreakerConfig())
    assert [p.id for p in kept] == ["fronted", "ort"]
    assert {e.pool: e.reason for e in excluded} == {
        "bare": f"{kind} pool needs an adapter server in front (adapter_server: true)"
    }


def test_a_format_mismatch_is_reported_first() -> None:
    bare = pool("bare", adapter="tfserving")  # onnx is not a tfserving format
    _, excluded = filter_pools(model(), [bare], Limits(), {}, 0.0, BreakerConfig())
    assert [e.reason for e in excluded] == ["adapter tfserving cannot serve format onnx"]


def mpfn(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPFN_")}
    proc = subprocess.run(
        [sys.executable, "-m", "mpfn", "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=state.parent,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_pools_add_warns_and_route_explain_shows_the_reason(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Registry(LocalStore(state)).add_model(demo_model_version(None))
    common = ["--cloud", "onprem", "--adapter", "tfserving", "--models", "demo"]

    bare = mpfn(state, "pools", "add", "tfs-bare", "--endpoint", "http://10.0.0.8:8501", *common)
    assert "warning:" in bare.stderr and TFS_GAP in bare.stderr
    assert "--adapter-server" in bare.stderr
    fronted = mpfn(
        state,
        "pools", "add", "tfs-fronted", "--endpoint", "http://10.0.0.9:8080", *common,
        "--adapter-server",
    )  # fmt: skip
    assert fronted.stderr == ""
    plain = mpfn(state, "pools", "add", "ort-a", "--endpoint", "http://10.0.0.7:8000")
    assert plain.stderr == ""
    listed = {p["id"]: p for p in json.loads(mpfn(state, "pools", "list", "--json").stdout)}
    assert listed["tfs-fronted"]["adapter_server"] is True
    assert listed["tfs-bare"]["adapter_server"] is False

    out = json.loads(mpfn(state, "route", "explain", "demo", "--json").stdout)
    assert {c["pool"] for c in out["candidates"]} == {"tfs-fronted", "ort-a"}
    assert out["excluded"] == [{"pool": "tfs-bare", "reason": TFS_GAP}]
    table = mpfn(state, "route", "explain", "demo").stdout
    assert "tfs-bare" in table and "needs an adapter server" in table
