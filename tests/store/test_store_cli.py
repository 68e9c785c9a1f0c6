"""The CLI on S3 and GCS state: the same commands as on local disk, and one-line errors
when the bucket is missing, the credentials are wrong or the store is unreachable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.servers.ports import unused_port
from tests.store.conftest import GCSServer, S3Server

MPFN = [sys.executable, "-m", "mpfn"]


def mpfn(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MPFN_"))}
    base.pop("STORAGE_EMULATOR_HOST", None)
    return subprocess.run(
        [*MPFN, *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


SHARED_BUCKET = "mpfn-shared"  # SeaweedFS gives each bucket its own volumes: reuse one


def s3_config(
    cwd: Path, server: S3Server, bucket: str, *, secret: str | None = None, prefix: str = "team-a"
) -> None:
    (cwd / "mpfn.yaml").write_text(
        f"state: s3://{bucket}/{prefix}\n"
        "s3:\n"
        f"  endpoint_url: {server.endpoint}\n"
        "  region: us-east-1\n"
        f"  access_key_id: {server.access_key}\n"
        f"  secret_access_key: {secret or server.secret_key}\n"
    )


def demo_file(tmp_path: Path) -> Path:
    from mpfn.demo import build_demo_model

    path = tmp_path / "model.onnx"
    path.write_bytes(build_demo_model())
    return path


def test_push_list_pull_on_s3(tmp_path: Path, seaweedfs: S3Server) -> None:
    bucket, prefix = SHARED_BUCKET, f"cli-{uuid.uuid4().hex[:8]}"
    s3_config(tmp_path, seaweedfs, bucket, prefix=prefix)
    model = demo_file(tmp_path)
    push = mpfn(["models", "push", str(model), "--name", "m", "--version", "1"], tmp_path)
    assert push.returncode == 0, push.stderr
    listed = json.loads(mpfn(["models", "list", "--json"], tmp_path).stdout)
    assert [(m["name"], m["version"]) for m in listed] == [("m", "1")]
    pull = mpfn(["models", "pull", "m", "--out", "back.onnx"], tmp_path)
    assert pull.returncode == 0, pull.stderr
    assert (tmp_path / "back.onnx").read_bytes() == model.read_bytes()
    keys = seaweedfs.store(bucket, prefix).list("")
    assert "models/m/1.json" in keys and "oci/index.json" in keys


def test_push_list_pull_on_gcs(tmp_path: Path, fake_gcs: GCSServer) -> None:
    bucket = fake_gcs.new_bucket()
    env = {"MPFN_STATE": f"gs://{bucket}/p", "STORAGE_EMULATOR_HOST": fake_gcs.endpoint}
    model = demo_file(tmp_path)
    push = mpfn(["models", "push", str(model), "--name", "m", "--version", "1"], tmp_path, env)
    assert push.returncode == 0, push.stderr
    pull = mpfn(["models", "pull", "m:1", "--out", "back.onnx"], tmp_path, env)
    assert pull.returncode == 0, pull.stderr
    assert (tmp_path / "back.onnx").read_bytes() == model.read_bytes()


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_bucket(tmp_path: Path, seaweedfs: S3Server) -> None:
    s3_config(tmp_path, seaweedfs, "no-such-bucket-here")
    _one_line_error(mpfn(["models", "list"], tmp_path), "does not exist")


def test_wrong_credentials(tmp_path: Path, seaweedfs: S3Server) -> None:
    s3_config(tmp_path, seaweedfs, SHARED_BUCKET, secret="not-the-secret")
    _one_line_error(mpfn(["pools", "list"], tmp_path), "credentials")


def test_unreachable_store(tmp_path: Path) -> None:
    port = unused_port()
    (tmp_path / "mpfn.yaml").write_text(
        f"state: s3://b/p\ns3: {{endpoint_url: 'http://127.0.0.1:{port}', region: us-east-1,"
        " access_key_id: a, secret_access_key: b}\n"
    )
    _one_line_error(mpfn(["status"], tmp_path), "cannot reach")
