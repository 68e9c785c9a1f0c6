"""The demo path (`mpfn up`: CLI, local store, artifacts, worker, router, warm loop) needs
only the core and `worker` dependencies: optional SDKs are imported lazily."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.factories import pool
from tests.servers.mpfn_procs import publish_demo

OPTIONAL = ["pandas", "prophet", "matplotlib", "requests", "oras", "boto3", "botocore",
            "google", "mangum", "grpc", "torch", "opentelemetry.sdk"]  # fmt: skip


def without(blocked: list[str], body: str) -> str:
    """A program that runs `body` with the modules `blocked` (and their submodules)
    impossible to import."""
    return f"""
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
{body}
"""


PROGRAM = without(
    OPTIONAL,
    """
import mpfn.cli.main, mpfn.up, mpfn.artifacts, mpfn.warm.loop, mpfn.functions.router.asgi
import mpfn.functions.router.app, mpfn.adapters.ort_worker.options
from mpfn.forecast import profile_forecast
print("ok")
""",
)


def test_demo_path_imports_without_optional_dependencies() -> None:
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          timeout=120, env={"MPFN_STATE": "/nonexistent-mpfn-state"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


WEB_STACK = ["fastapi", "starlette", "aiohttp", "uvicorn"]

CLI_WITHOUT_WEB_STACK = without(
    WEB_STACK,
    """
from mpfn.cli.main import main
sys.argv = ["mpfn", *sys.argv[1:]]
main()
""",
)


@pytest.mark.parametrize(
    "args",
    [
        ["route", "explain", "demo", "--json"],
        ["warm", "plan", "--json"],
        ["warm", "run"],
    ],
)
def test_route_explain_and_the_warmer_import_no_web_stack(tmp_path: Path, args: list[str]) -> None:
    """`mpfn route explain` and the warmer decide from the store alone: they must not pay
    for the router's web stack (FastAPI, Starlette, aiohttp, uvicorn)."""
    state = LocalStore(tmp_path / "state")
    publish_demo(state, tmp_path)
    p1 = pool("p1", "http://127.0.0.1:9", models=["demo"])
    Documents(state).upsert(p1.key, p1)
    proc = subprocess.run(
        [sys.executable, "-c", CLI_WITHOUT_WEB_STACK, *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "MPFN_STATE": state.url},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "No module named" not in proc.stderr
