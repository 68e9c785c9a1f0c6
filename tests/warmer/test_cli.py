"""`mpfn warm run`, `plan [--json] [--last]` and `report --out` on a state with real workers."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from mpfn.cli.main import app
from mpfn.store import LocalStore
from tests.warmer.helpers import (
    Catalog,
    Workers,
    add_models,
    add_pool,
    hourly,
    load,
    ready,
    write_usage,
)


def _mpfn(store: LocalStore, *args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["--state", str(store.root), "warm", *args])
    return res.exit_code, res.stdout, res.stderr


def test_warm_cli_run_plan_and_report(
    warm_store: LocalStore, catalog: Catalog, workers: Workers, tmp_path: Path
) -> None:
    add_models(warm_store, catalog, ["busy", "idle"])
    add_pool(warm_store, "cheap", workers.cheap.url, 0.5)
    add_pool(warm_store, "dear", workers.dear.url, 1.2)
    now = time.time()
    write_usage(warm_store, "busy", hourly(now, 4 * 24, 30))
    load(workers.dear, "idle")

    code, out, err = _mpfn(warm_store, "plan", "--last")
    assert code == 1 and err.startswith("error: no warm plan yet") and "Traceback" not in err

    code, out, err = _mpfn(warm_store, "plan", "--json")
    assert code == 0, err
    planned = json.loads(out)
    assert planned["applied"] is False
    assert {(a["action"], a["model"], a["pool"]) for a in planned["actions"]} == {
        ("load", "busy", "cheap"),
        ("unload", "idle", "dear"),
    }
    assert ready(workers.dear) == {"idle"}  # planning changed nothing

    code, out, err = _mpfn(warm_store, "plan")
    assert code == 0 and "load   busy:1 on cheap -> planned" in out

    code, out, err = _mpfn(warm_store, "run", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["applied"] and summary["loads"] == 1 and summary["unloads"] == 1
    assert summary["warm"] == ["busy"] and summary["errors"] == []
    assert ready(workers.cheap) == {"busy"} and ready(workers.dear) == set()

    code, out, err = _mpfn(warm_store, "plan", "--last", "--json")
    assert code == 0 and json.loads(out)["applied"] is True

    code, out, err = _mpfn(warm_store, "run")
    assert code == 0 and "no changes" in out

    code, out, err = _mpfn(warm_store, "report", "--out", str(tmp_path / "charts"))
    assert code == 0, err
    pngs = sorted((tmp_path / "charts").glob("*.png"))
    assert [p.name for p in pngs] == ["busy.png"]  # idle: no requests, no forecast to draw
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    assert out.split() == [str(p) for p in pngs]
    assert "not drawn" in err and "idle" in err
