"""`mpfn build`'s images: what they are, that an unchanged build is a no-op, and that they
go to an OCI registry (Debian's docker-registry on loopback) and come back the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mpfn.images.build import BuildOptions, build_images, default_cache_dir
from mpfn.images.builder import Builder
from mpfn.images.catalog import CATALOG, resolve
from mpfn.images.platforms import host_platform
from tests.servers.containers import runtime
from tests.servers.oci_registry import registry_server
from tests.servers.process import ROOT


def inspect(ref: str) -> dict[str, object]:
    out = subprocess.run(
        [runtime(), "image", "inspect", ref], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out)[0]
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("target", ["router", "warmer", "worker", "adapter:tfserving"])
def test_images_run_as_non_root_with_labels_and_entry_points(
    images: dict[str, str], target: str
) -> None:
    spec = CATALOG[target]
    config = inspect(images[target])["Config"]
    assert isinstance(config, dict)
    assert config["User"] == "10001:10001"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == spec.name
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.source"]
    assert config["Entrypoint"] == list(spec.entrypoint)
    assert images[target].startswith(f"localhost/{spec.name}:0.1.0-")


def test_an_unchanged_build_is_a_no_op(images: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mpfn", "build", "router", "worker", "--json",
         "--builder", runtime(), "--source", str(ROOT)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)  # progress goes to stderr: stdout is the JSON alone
    assert [b["cached"] for b in again] == [True, True]
    assert {b["target"]: b["ref"] for b in again} == {t: images[t] for t in ("router", "worker")}


def test_push_to_a_registry_and_pull_back(images: dict[str, str], tmp_path: Path) -> None:
    tool = runtime()
    with registry_server(tmp_path) as registry:
        options = BuildOptions(
            ROOT, default_cache_dir(), host_platform(), push=f"http://{registry.host}"
        )
        (built,) = build_images(Builder(tool), resolve(["router"]), options, print)
        assert built.cached and built.pushed is not None
        assert built.pushed == f"{registry.host}/mpfn-router:{images['router'].split(':')[-1]}"
        pulled = subprocess.run(
            [tool, "pull", "--tls-verify=false", built.pushed], capture_output=True, text=True
        )
        try:
            assert pulled.returncode == 0, pulled.stderr
            assert inspect(built.pushed)["Id"] == inspect(images["router"])["Id"]
        finally:
            subprocess.run([tool, "rmi", built.pushed], capture_output=True)
