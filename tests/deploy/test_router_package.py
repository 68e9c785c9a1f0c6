"""The router zip, unpacked and run as Lambda runs it, serving Function URL events.

The handler is imported from the unpacked package in a separate interpreter whose only
importable code is the standard library, the package and what the Lambda Python runtime
provides (boto3 and its dependencies). It serves real Function URL (payload v2) events
against the state bucket that deploy created on the moto server, forwarding inference to
a stand-in backend on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from mpfn.deploy import deploy, destroy
from mpfn.deploy.packaging import RUNTIME_PROVIDED, RouterPackage, module_closure
from mpfn.deploy.planner import PlanOptions
from mpfn.documents import ModelVersion, Pool
from mpfn.state import Documents
from tests.deploy.conftest import KEY, REGION, SECRET, AwsProject, aws_target
from tests.deploy.test_aws import state_store
from tests.servers.echo_backend import echo_backend_server
from tests.servers.process import Proc

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    with echo_backend_server(tmp_path_factory.mktemp("backend")) as proc:
        yield proc


def runtime_dir(root: Path) -> Path:
    """Links to what the Lambda Python runtime ships: boto3 and its dependencies."""
    runtime = root / "runtime"
    runtime.mkdir()
    for name in RUNTIME_PROVIDED:
        dist = metadata.distribution(name)
        tops = {str(f).split("/")[0] for f in dist.files or () if not str(f).startswith("..")}
        for top in tops:
            if top.endswith((".dist-info", ".pth")) or top in ("bin", "__pycache__"):
                continue
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (runtime / top).exists():
                (runtime / top).symlink_to(source)
    return runtime


def url_event(method: str, path: str, body: str = "") -> dict[str, Any]:
    host = "abc123.lambda-url.us-east-1.on.aws"
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": host, "x-forwarded-proto": "https", "content-type": "application/json"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": host,
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "c0ffee",
            "routeKey": "$default",
            "stage": "$default",
            "time": "05/Mar/2026:07:09:00 +0000",
            "timeEpoch": 1772694540000,
        },
        "body": body,
        "isBase64Encoded": False,
    }


def test_package_is_small_and_has_only_what_the_router_needs(
    router_package: RouterPackage,
) -> None:
    names = zipfile.ZipFile(router_package.path).namelist()
    assert "mpfn/functions/router/lambda_handler.py" in names
    assert router_package.size < 12_000_000, router_package.describe()
    tops = {n.split("/")[0] for n in names}
    assert not tops & {"boto3", "botocore", "numpy", "onnxruntime", "google", "typer", "rich"}
    mpfn_modules = set(module_closure())
    assert "mpfn.cli" not in mpfn_modules and "mpfn.artifacts" not in mpfn_modules
    assert not any(n.endswith((".pyc", ".pyi")) or "/__pycache__/" in n for n in names)


@pytest.mark.parametrize("source", ["installed", "wheels"])
def test_zip_handler_serves_function_url_events_on_the_deployed_state(
    aws_project: AwsProject,
    source: str,
    backend: Proc,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """`installed`: binary code copied from this environment; `wheels`: from the target's
    manylinux wheels, as a package built on macOS or Windows has it."""
    fixture = "router_package" if source == "installed" else "wheel_router_package"
    router_package: RouterPackage = request.getfixturevalue(fixture)
    target = aws_target(aws_project, router_package)
    deploy(target, lambda _line: None)
    docs = Documents(state_store(aws_project))
    spec = {"name": "x", "datatype": "FP32", "shape": [1, 2]}
    model = ModelVersion.model_validate(
        {"name": "demo", "version": "1", "inputs": [spec], "outputs": [{**spec, "name": "y"}]}
    )
    docs.upsert(model.key, model)
    pool = Pool.model_validate({"id": "p1", "cloud": "aws", "endpoint": backend.url})
    docs.upsert(pool.key, pool)

    unpacked = tmp_path / "task"
    zipfile.ZipFile(router_package.path).extractall(unpacked)
    deployed = aws_project.api().get_function(target.router)
    assert deployed is not None
    env = {
        "PATH": os.environ.get("PATH", ""),
        **deployed["Configuration"]["Environment"]["Variables"],
        "AWS_ENDPOINT_URL": aws_project.endpoint,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "MPFN_ROUTER_USAGE_FLUSH_S": "3600",
    }
    infer = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.0]}]}
    events = [
        url_event("GET", "/v2/health/ready"),
        url_event("GET", "/v2/models/demo"),
        url_event("POST", "/v2/models/demo/infer", json.dumps(infer)),
        url_event("POST", "/v2/models/ghost/infer", json.dumps(infer)),
        {"source": "mpfn.scheduler"},
    ]
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(HERE / "lambda_driver.py"),
            str(unpacked),
            str(runtime_dir(tmp_path)),
        ],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["foreign"] == [], "imported from outside the package and the runtime"
    ready, metadata_, inferred, unknown, ping = out["responses"]
    assert ready["statusCode"] == 200
    assert metadata_["statusCode"] == 200
    assert json.loads(metadata_["body"])["inputs"][0]["name"] == "x"
    assert inferred["statusCode"] == 200, inferred
    assert json.loads(inferred["body"])["outputs"][0]["data"] == [3.0, 4.0]
    assert inferred["headers"]["x-mpfn-pool"] == "p1"
    assert unknown["statusCode"] == 404
    assert ping["ok"] is True and ping["usage_written"] >= 1
    assert state_store(aws_project).list("usage/demo/")

    destroy(target, lambda _line: None, options=PlanOptions(delete_state=True))
    assert aws_project.api().bucket_region(aws_project.bucket) is None
