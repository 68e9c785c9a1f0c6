"""`mpfn build`'s images: what they are, that an unchanged build is a no-op, and that they
go to an OCI registry (Debian's docker-registry on loopback) and come back the same."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
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


@pytest.mark.parametrize("target", list(CATALOG))
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


def test_push_every_image_to_a_registry_and_pull_back(
    images: dict[str, str], tmp_path: Path
) -> None:
    tool = runtime()
    (tmp_path / "registry").mkdir()
    with registry_server(tmp_path / "registry") as registry:
        options = BuildOptions(
            ROOT, default_cache_dir(), host_platform(), push=f"http://{registry.host}"
        )
        built = build_images(Builder(tool), resolve(["all"]), options, print)
        assert [b.target for b in built] == list(CATALOG)
        for b in built:
            assert b.cached and b.ref == images[b.target]
            assert b.pushed == f"{registry.host}/{CATALOG[b.target].name}:{b.ref.split(':')[-1]}"
            name, tag = b.pushed.split("/", 1)[1].split(":")
            head = httpx.head(
                f"http://{registry.host}/v2/{name}/manifests/{tag}",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                         "application/vnd.docker.distribution.manifest.v2+json"},
            )  # fmt: skip
            assert head.status_code == 200, (b.pushed, head.status_code)
        # into empty storage, so every layer really comes from the registry
        router = next(b for b in built if b.target == "router")
        assert router.pushed is not None
        runroot = Path(tempfile.mkdtemp(prefix="mpfn-run-"))  # podman: at most 50 characters
        fresh = (f"--root={tmp_path / 'root'}", f"--runroot={runroot}")
        pulled = subprocess.run(
            [tool, *fresh, "pull", "--tls-verify=false", router.pushed],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert pulled.returncode == 0, pulled.stderr
        again = subprocess.run(
            [tool, *fresh, "image", "inspect", "--format", "{{.Id}}", router.pushed],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert again == inspect(images["router"])["Id"]
        subprocess.run([tool, *fresh, "rmi", "-a", "-f"], capture_output=True, check=False)
        shutil.rmtree(runroot, ignore_errors=True)
