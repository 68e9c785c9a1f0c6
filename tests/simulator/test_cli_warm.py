"""`mpfn warm simulate` prints one JSON object per policy and draws the Pareto chart."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mpfn.cli.warm import app


def _trace(path: Path) -> Path:
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    rows += [
        f"2023-11-16 18:{m:02d}:{s:02d}.0000000,10,10" for m in range(0, 60, 7) for s in (1, 30)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_simulate_json(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "t.csv")
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--trace",
            str(trace),
            "--policy",
            "keepalive:600",
            "--holdout-days",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["policy"] == "keepalive:600" and out["requests"] == 18 and out["cold_starts"] == 1
    assert {"cold_start_rate", "warm_model_hours"} <= set(out)


def test_simulate_plot_and_several(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "t.csv")
    png = tmp_path / "p.png"
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--trace",
            str(trace),
            "--policy",
            "none",
            "--policy",
            "histogram",
            "--holdout-days",
            "1",
            "--json",
            "--plot",
            str(png),
        ],
    )
    assert res.exit_code == 0, res.output
    assert [r["policy"] for r in json.loads(res.stdout)] == ["none", "histogram"]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bad_policy_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["simulate", "--trace", str(_trace(tmp_path / "t.csv")), "--policy", "lru"]
    )
    assert res.exit_code == 1
    assert "unknown policy" in res.output and "Traceback" not in res.output
