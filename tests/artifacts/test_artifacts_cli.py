"""`mpfn models push --registry` / `pull` through a real OCI registry on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.servers.oci_registry import RegistryServer

MPFN = [sys.executable, "-m", "mpfn"]


def mpfn(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"}
    return subprocess.run(
        [*MPFN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_push_pull_through_registry(tmp_path: Path, registry: RegistryServer) -> None:
    from mpfn.demo import build_demo_model

    model = tmp_path / "model.onnx"
    model.write_bytes(build_demo_model())
    push = mpfn(
        [
            "models",
            "push",
            str(model),
            "--name",
            "m",
            "--version",
            "2",
            "--registry",
            f"{registry.host}/models/m",
            "--insecure",
            "--hardware",
            "cpu,nvidia",
        ],
        tmp_path,
    )
    assert push.returncode == 0, push.stderr
    doc = json.loads(mpfn(["models", "show", "m:2", "--json"], tmp_path).stdout)
    assert doc["artifact"]["reference"] == f"{registry.host}/models/m"
    assert doc["hardware"] == ["cpu", "nvidia"]
    pull = mpfn(["models", "pull", "m", "--out", "x.onnx", "--insecure"], tmp_path)
    assert pull.returncode == 0, pull.stderr
    assert (tmp_path / "x.onnx").read_bytes() == model.read_bytes()

    # Tamper with the blob inside the registry's storage: the pull is refused.
    registry.blob_data(doc["artifact"]["blob_digest"]).write_bytes(b"tampered")
    bad = mpfn(["models", "pull", "m", "--out", "y.onnx", "--insecure"], tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error:") and "digest" in bad.stderr.lower()
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "y.onnx").exists()
