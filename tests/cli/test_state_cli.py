"""`mpfn state add-site|sites|sync|remove-site` as a user runs them on local directories."""

from __future__ import annotations

import json
from pathlib import Path

from mpfn.registry import Registry
from mpfn.store import LocalStore
from tests.cli.test_cli import run


def test_a_site_is_filled_kept_in_step_caught_up_and_removed(tmp_path: Path) -> None:
    primary, east = tmp_path / "primary", tmp_path / "east"
    state = ["--state", str(primary)]
    run([*state, "pools", "add", "p1", "--endpoint", "http://p1.invalid:8000"], cwd=tmp_path)
    added = run([*state, "state", "add-site", "east", "--state", str(east)], cwd=tmp_path)
    assert "east: 1 copied" in added.stdout
    run([*state, "pools", "add", "p2", "--endpoint", "http://p2.invalid:8000"], cwd=tmp_path)
    assert sorted(p.id for p in Registry(LocalStore(east)).pools()) == ["p1", "p2"]

    LocalStore(east).delete("pools/p2.json")  # a replica that lost a document
    synced = run([*state, "state", "sync", "--json"], cwd=tmp_path)
    [report] = json.loads(synced.stdout)
    assert report["site"] == "east" and report["ok"] and report["copied"] == 1
    listed = json.loads(run([*state, "state", "sites", "--json"], cwd=tmp_path).stdout)
    assert listed["sites"] == [{"site": "east", "state": str(east), "behind": False}]

    unknown = run([*state, "state", "sync", "--site", "west"], cwd=tmp_path, ok=False)
    assert unknown.returncode != 0 and "unknown site(s) west" in unknown.stdout + unknown.stderr
    bad = run([*state, "state", "add-site", "East!", "--state", "x"], cwd=tmp_path, ok=False)
    assert bad.returncode != 0 and "site name 'East!': use lower-case" in bad.stdout + bad.stderr
    run([*state, "state", "remove-site", "east"], cwd=tmp_path)
    none = run([*state, "state", "sync"], cwd=tmp_path, ok=False)
    assert "lists no sites" in none.stdout + none.stderr
