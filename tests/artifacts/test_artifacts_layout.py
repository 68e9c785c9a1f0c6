"""The embedded OCI image layout: round trips, on-disk validity, tampering, concurrency."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from mpfn.artifacts import (
    ARTIFACT_TYPE,
    ArtifactError,
    DigestMismatch,
    layer_media_type,
    pull_model,
    push_model,
)
from mpfn.documents import ArtifactRef, ModelVersion
from mpfn.store.base import Store
from mpfn.store.local import LocalStore


def blob_path(store: LocalStore, digest: str) -> Path:
    return store.root / "oci" / "blobs" / "sha256" / digest.split(":", 1)[1]


def test_round_trip_is_byte_identical(store: LocalStore, model_file: Path, tmp_path: Path) -> None:
    pushed: list[tuple[int, int]] = []
    ref = push_model(
        store, model_file, name="demo", version="1", progress=lambda d, t: pushed.append((d, t))
    )
    size = model_file.stat().st_size
    assert ref.reference == "oci-layout:oci"
    assert ref.tag == "demo-1"
    assert ref.size == size
    assert ref.filename == "model.onnx"
    assert ref.media_type == layer_media_type("onnx") == "application/vnd.mpfn.model.layer.v1.onnx"
    assert ref.blob_digest == "sha256:" + hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert pushed[-1] == (size, size)
    # The ref is what a ModelVersion records.
    ModelVersion(name="demo", version="1", artifact=ref)

    pulled: list[tuple[int, int]] = []
    out = pull_model(
        store, ref, tmp_path / "out" / "m.onnx", progress=lambda d, t: pulled.append((d, t))
    )
    assert out.read_bytes() == model_file.read_bytes()
    assert pulled[-1] == (size, size)
    assert [d for d, _ in pulled] == sorted(d for d, _ in pulled)


def test_layout_on_disk_is_a_valid_oci_layout(store: LocalStore, model_file: Path) -> None:
    ref = push_model(store, model_file, name="demo", version="2", fmt="onnx")
    root = store.root / "oci"
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    [entry] = index["manifests"]
    assert entry["digest"] == ref.digest
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "demo-2"

    manifest_bytes = blob_path(store, ref.digest).read_bytes()
    assert entry["size"] == len(manifest_bytes)
    manifest = json.loads(manifest_bytes)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == ARTIFACT_TYPE
    config = manifest["config"]
    assert config["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert blob_path(store, config["digest"]).read_bytes() == b"{}"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == ref.media_type
    assert layer["digest"] == ref.blob_digest
    assert layer["size"] == ref.size
    assert layer["annotations"]["org.opencontainers.image.title"] == "model.onnx"

    blobs = sorted((root / "blobs" / "sha256").iterdir())
    assert len(blobs) == 3
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def test_repush_is_idempotent_and_moves_nothing(store: LocalStore, model_file: Path) -> None:
    first = push_model(store, model_file, name="demo", version="1")
    second = push_model(store, model_file, name="demo", version="1")
    assert first == second
    index = json.loads((store.root / "oci" / "index.json").read_text())
    assert len(index["manifests"]) == 1


def test_tampered_blob_is_rejected(store: LocalStore, model_file: Path, tmp_path: Path) -> None:
    ref = push_model(store, model_file, name="demo", version="1")
    blob = blob_path(store, ref.blob_digest)
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(DigestMismatch) as err:
        pull_model(store, ref, out)
    message = str(err.value)
    assert ref.blob_digest in message
    assert "sha256:" + hashlib.sha256(bytes(data)).hexdigest() in message
    assert "\n" not in message
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no partial download left behind


def test_tampered_manifest_is_rejected(store: LocalStore, model_file: Path, tmp_path: Path) -> None:
    ref = push_model(store, model_file, name="demo", version="1")
    manifest = blob_path(store, ref.digest)
    manifest.write_bytes(manifest.read_bytes().replace(b"model.onnx", b"other.onnx"))
    with pytest.raises(DigestMismatch, match=ref.digest):
        pull_model(store, ref, tmp_path / "m.onnx")


def test_ref_with_wrong_blob_digest_is_rejected(
    store: LocalStore, model_file: Path, tmp_path: Path
) -> None:
    ref = push_model(store, model_file, name="demo", version="1")
    wrong = ref.model_copy(update={"blob_digest": "sha256:" + "0" * 64})
    with pytest.raises(DigestMismatch, match="0" * 64):
        pull_model(store, wrong, tmp_path / "m.onnx")


def test_missing_artifact_is_an_artifact_error(store: LocalStore, tmp_path: Path) -> None:
    ref = ArtifactRef(
        reference="oci-layout:oci",
        tag="demo-1",
        digest="sha256:" + "a" * 64,
        blob_digest="sha256:" + "b" * 64,
        size=1,
        media_type=layer_media_type("onnx"),
        filename="model.onnx",
    )
    with pytest.raises(ArtifactError, match="not found") as err:
        pull_model(store, ref, tmp_path / "m.onnx")
    assert not isinstance(err.value, DigestMismatch)


def test_bad_inputs_give_one_line_errors(
    store: LocalStore, model_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        push_model(store, tmp_path / "nope.onnx", name="demo", version="1")
    with pytest.raises(ArtifactError, match="invalid model format"):
        push_model(store, model_file, name="demo", version="1", fmt="ONNX/../x")
    with pytest.raises(ArtifactError, match="invalid registry"):
        push_model(store, model_file, name="demo", version="1", registry="no-repo-here")


def test_generic_store_round_trip(generic_store: Store, model_file: Path, tmp_path: Path) -> None:
    """The whole-object path taken by S3/GCS stores lays out the same keys."""
    ref = push_model(generic_store, model_file, name="demo", version="1")
    keys = generic_store.list("oci/")
    assert "oci/oci-layout" in keys and "oci/index.json" in keys
    assert f"oci/blobs/sha256/{ref.blob_digest.split(':')[1]}" in keys
    out = pull_model(generic_store, ref, tmp_path / "m.onnx")
    assert out.read_bytes() == model_file.read_bytes()


@pytest.mark.parametrize("kind", ["local", "generic"])
def test_concurrent_pushes_all_land_in_index(
    kind: str, store: LocalStore, generic_store: Store, tmp_path: Path
) -> None:
    target: Store = store if kind == "local" else generic_store
    workers = 8
    files = []
    for i in range(workers):
        path = tmp_path / f"m{i}.onnx"
        path.write_bytes(f"model {i}".encode() * 100)
        files.append(path)
    barrier = threading.Barrier(workers)
    refs: dict[int, ArtifactRef] = {}
    errors: list[BaseException] = []

    def push(i: int) -> None:
        try:
            barrier.wait()
            refs[i] = push_model(target, files[i], name="demo", version=str(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    index_blob = target.get("oci/index.json")
    assert index_blob is not None
    index = json.loads(index_blob.body)
    by_tag = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
    }
    assert by_tag == {f"demo-{i}": refs[i].digest for i in range(workers)}
    for i in range(workers):
        assert (
            pull_model(target, refs[i], tmp_path / "out" / f"{i}").read_bytes()
            == files[i].read_bytes()
        )
