"""Push and pull through a real OCI registry (distribution) with oras-py."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import oras.provider
import pytest

from mpfn.artifacts import (
    ARTIFACT_TYPE,
    ArtifactError,
    DigestMismatch,
    fetch_cached,
    pull_model,
    push_model,
)
from mpfn.store.local import LocalStore
from tests.servers.oci_registry import RegistryServer
from tests.servers.ports import unused_port


def test_round_trip(
    registry: RegistryServer, store: LocalStore, model_file: Path, tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []
    repo = f"{registry.host}/models/demo"
    ref = push_model(
        store,
        model_file,
        name="demo",
        version="1",
        registry=repo,
        insecure=True,
        progress=lambda d, t: seen.append((d, t)),
    )
    size = model_file.stat().st_size
    assert ref.reference == repo
    assert ref.tag == "demo-1"
    assert ref.blob_digest == "sha256:" + hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert seen[-1] == (size, size)
    assert store.list("oci/") == []  # nothing went to the embedded layout

    out = pull_model(store, ref, tmp_path / "out.onnx", insecure=True)
    assert out.read_bytes() == model_file.read_bytes()

    # A second push of the same file finds the blobs present and yields the same ref.
    assert (
        push_model(store, model_file, name="demo", version="1", registry=repo, insecure=True) == ref
    )


def test_registry_holds_an_oras_readable_artifact(
    registry: RegistryServer, store: LocalStore, model_file: Path, tmp_path: Path
) -> None:
    repo = f"{registry.host}/models/interop"
    ref = push_model(store, model_file, name="interop", version="3", registry=repo, insecure=True)
    client = oras.provider.Registry(insecure=True)
    manifest = client.get_manifest(f"{repo}:{ref.tag}")
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert manifest["layers"][0]["mediaType"] == ref.media_type
    [pulled] = client.pull(target=f"{repo}@{ref.digest}", outdir=str(tmp_path / "oras"))
    assert Path(pulled).name == "model.onnx"
    assert Path(pulled).read_bytes() == model_file.read_bytes()


def test_wrong_blob_digest_is_rejected(
    registry: RegistryServer, store: LocalStore, model_file: Path, tmp_path: Path
) -> None:
    ref = push_model(
        store,
        model_file,
        name="demo",
        version="1",
        registry=f"{registry.host}/models/demo",
        insecure=True,
    )
    wrong = ref.model_copy(update={"blob_digest": "sha256:" + "1" * 64})
    with pytest.raises(DigestMismatch, match="1" * 64):
        pull_model(store, wrong, tmp_path / "out.onnx", insecure=True)
    assert not (tmp_path / "out.onnx").exists()


def test_tampered_registry_blob_is_rejected(
    registry: RegistryServer, store: LocalStore, tmp_path: Path
) -> None:
    model = tmp_path / "tamper.onnx"
    model.write_bytes(os.urandom(64 * 1024))  # unique content: its blob is ours alone
    ref = push_model(
        store,
        model,
        name="tamper",
        version="1",
        registry=f"{registry.host}/models/tamper",
        insecure=True,
    )
    data = registry.blob_data(ref.blob_digest)
    data.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(DigestMismatch, match=ref.blob_digest):
        pull_model(store, ref, tmp_path / "out.onnx", insecure=True)
    with pytest.raises(DigestMismatch):
        fetch_cached(store, ref, tmp_path / "cache", insecure=True)


def test_fetch_cached_from_registry(
    registry: RegistryServer, store: LocalStore, model_file: Path, tmp_path: Path
) -> None:
    ref = push_model(
        store,
        model_file,
        name="demo",
        version="2",
        registry=f"{registry.host}/models/demo",
        insecure=True,
    )
    first = fetch_cached(store, ref, tmp_path / "cache", insecure=True)
    assert fetch_cached(store, ref, tmp_path / "cache", insecure=True) == first
    assert first.read_bytes() == model_file.read_bytes()


def test_unknown_manifest_is_an_artifact_error(
    registry: RegistryServer, store: LocalStore, model_file: Path, tmp_path: Path
) -> None:
    ref = push_model(
        store,
        model_file,
        name="demo",
        version="1",
        registry=f"{registry.host}/models/demo",
        insecure=True,
    )
    missing = ref.model_copy(update={"digest": "sha256:" + "2" * 64})
    with pytest.raises(ArtifactError, match="not found") as err:
        pull_model(store, missing, tmp_path / "out.onnx", insecure=True)
    assert not isinstance(err.value, DigestMismatch)


def test_unreachable_registry_is_a_one_line_error(store: LocalStore, model_file: Path) -> None:
    closed = f"127.0.0.1:{unused_port()}/models/demo"
    with pytest.raises(ArtifactError, match="cannot reach registry") as err:
        push_model(store, model_file, name="demo", version="1", registry=closed, insecure=True)
    assert "\n" not in str(err.value)
