"""The demo path (`mpfn up`: CLI, local store, artifacts, worker, router, warm loop) needs
only the core and `worker` dependencies: optional SDKs are imported lazily."""

from __future__ import annotations

import subprocess
import sys

OPTIONAL = ["pandas", "prophet", "matplotlib", "requests", "oras", "boto3", "botocore",
            "google", "mangum", "grpc", "torch", "opentelemetry.sdk"]  # fmt: skip

PROGRAM = f"""
import importlib.abc, sys
BLOCKED = {OPTIONAL!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
import mpfn.cli.main, mpfn.up, mpfn.artifacts, mpfn.warm.loop, mpfn.functions.router.asgi
import mpfn.functions.router.app, mpfn.adapters.ort_worker.options
from mpfn.forecast import profile_forecast
print("ok")
"""


def test_demo_path_imports_without_optional_dependencies() -> None:
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          timeout=120, env={"MPFN_STATE": "/nonexistent-mpfn-state"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
