"""`mpfn invoke` as a user runs it: the routers the state records with failover and the
answering site on stderr, `--site`, `--api-key`, and `--router` as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mpfn.entrypoints import write_router
from mpfn.store import LocalStore
from tests.client.conftest import DOUBLED, Routers, X, entry

MPFN = [sys.executable, "-m", "mpfn"]
HIDDEN = ("MPFN_ROUTER", "MPFN_API_KEY", "MPFN_STATE")


def invoke(
    state: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in HIDDEN}
    argv = [*MPFN, "--state", str(state), "invoke", "demo", "--input", json.dumps({"x": [X]})]
    return subprocess.run(
        [*argv, *args],
        cwd=state.parent,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_invoke_fails_over_between_the_recorded_routers(routers: Routers, tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = LocalStore(state)
    write_router(store, entry("a", routers.broken.url))
    write_router(store, entry("b", routers.ok.url))
    write_router(store, entry("c", routers.down_url))

    done = invoke(state, "--site", "c")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["outputs"][0]["data"] == DOUBLED
    assert answer["parameters"]["pool"] == "p1"
    assert f"answered by site b ({routers.ok.url})" in done.stderr
    assert "c skipped: cannot connect" in done.stderr
    assert "a skipped: 503 no healthy backend" in done.stderr

    unknown = invoke(state, "--site", "z")
    assert unknown.returncode == 1
    assert "no router for site 'z'; recorded: a, b, c" in unknown.stderr

    write_router(store, entry("b", routers.down_url))  # now no site answers
    failed = invoke(state)
    assert failed.returncode == 1
    assert "no router answered (3 tried)" in failed.stderr


def test_invoke_sends_the_api_key(routers: Routers, tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = LocalStore(state)
    write_router(store, entry("k", routers.keys.url, "api-key"))
    write_router(store, entry("z", routers.down_url))

    done = invoke(state, "--site", "k", "--api-key", routers.api_key)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"][0]["data"] == DOUBLED
    assert "answered by site k" in done.stderr
    from_env = invoke(state, env={"MPFN_API_KEY": routers.api_key})
    assert from_env.returncode == 0, from_env.stderr

    wrong = routers.api_key[:-4] + "AAAA"
    refused = invoke(state, "--api-key", wrong)
    assert refused.returncode == 1
    assert "401: invalid API key" in refused.stderr  # the answer: z is not tried
    assert "z skipped" not in refused.stderr
    assert wrong not in refused.stderr


def test_invoke_with_a_router_url_keeps_working(routers: Routers, tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_router(LocalStore(state), entry("a", routers.down_url))  # not used with --router
    done = invoke(state, "--router", routers.ok.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"][0]["data"] == DOUBLED
    assert "answered by" not in done.stderr
    from_env = invoke(state, env={"MPFN_ROUTER": routers.keys.url, "MPFN_API_KEY": routers.api_key})
    assert from_env.returncode == 0, from_env.stderr
    keyless = invoke(state, "--router", routers.keys.url)
    assert keyless.returncode == 1
    assert "401: missing API key" in keyless.stderr
    site = invoke(state, "--router", routers.ok.url, "--site", "a")
    assert site.returncode == 1
    assert "--site picks one of the routers the state records" in site.stderr
