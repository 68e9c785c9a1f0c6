"""Push and pull model files as OCI artifacts, pinned and verified by digest.

`push_model` writes one model file as an OCI artifact either into the store's embedded
OCI image layout (default) or to a registry (`registry="HOST[:PORT]/REPO"`), and returns
the `ArtifactRef` to record in the model's `ModelVersion`. `pull_model` resolves the
manifest by digest only (never by tag), checks the manifest's and the layer's sha256 and
size against the ref, and writes the file atomically. Any mismatch is `DigestMismatch`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mpfn.artifacts.errors import ArtifactError, DigestMismatch, mismatch
from mpfn.artifacts.layout import DEFAULT_PREFIX, Layout, parse_reference
from mpfn.artifacts.media import (
    EMPTY_CONFIG,
    EMPTY_DIGEST,
    Layer,
    build_manifest,
    layer_media_type,
    model_tag,
    parse_manifest,
    sha256_digest,
)
from mpfn.artifacts.streams import Progress, describe_file, write_verified
from mpfn.documents import ArtifactRef
from mpfn.store.base import Store


def push_model(
    store: Store,
    path: Path,
    *,
    name: str,
    version: str,
    fmt: str = "onnx",
    registry: str | None = None,
    insecure: bool = False,
    progress: Progress | None = None,
) -> ArtifactRef:
    """Publish `path` as the artifact of model `name` `version`, tagged `<name>-<version>`.

    `progress(done, total)` reports bytes transferred. Pushing the same file again is
    harmless: blobs are content-addressed and the tag simply points at the same digest.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"model file {path} does not exist or is not a file")
    media_type = layer_media_type(fmt)
    tag = model_tag(name, version)
    digest, size = describe_file(path)
    layer = Layer(digest, size, media_type, path.name)
    manifest = build_manifest(layer, name=name, version=version, fmt=fmt)
    manifest_digest = sha256_digest(manifest)

    if registry is None:
        layout = Layout(store, DEFAULT_PREFIX)
        layout.put_file(path, digest, size, progress)
        layout.put_config()
        layout.put_bytes(manifest)
        layout.tag(manifest_digest, len(manifest), tag)
        reference = layout.reference
    else:
        from mpfn.artifacts.remote import RegistryClient  # oras: the `oci` extra

        client = RegistryClient(registry, insecure=insecure)
        client.upload_blob(digest, size, path, progress)
        client.upload_blob(EMPTY_DIGEST, len(EMPTY_CONFIG), EMPTY_CONFIG)
        client.put_manifest(manifest, manifest_digest, tag)
        reference = client.reference

    return ArtifactRef(
        reference=reference,
        tag=tag,
        digest=manifest_digest,
        blob_digest=digest,
        size=size,
        media_type=media_type,
        filename=path.name,
    )


def pull_model(
    store: Store,
    ref: ArtifactRef,
    out: Path,
    *,
    progress: Progress | None = None,
    insecure: bool = False,
) -> Path:
    """Download the model file `ref` pins to `out` (atomically) after verifying it."""
    prefix = parse_reference(ref.reference)
    if prefix is not None:
        layout = Layout(store, prefix)
        manifest = layout.get_bytes(ref.digest, "manifest")
        layer = _verified_layer(manifest, ref)
        chunks: Iterator[bytes] = layout.chunks(layer.digest, "model blob")
    else:
        from mpfn.artifacts.remote import RegistryClient  # oras: the `oci` extra

        client = RegistryClient(ref.reference, insecure=insecure)
        manifest = client.get_manifest(ref.digest)
        layer = _verified_layer(manifest, ref)
        chunks = client.blob_chunks(layer.digest)
    return write_verified(
        chunks,
        Path(out),
        digest=ref.blob_digest,
        size=ref.size,
        what=f"model blob of {ref.reference}@{ref.digest}",
        progress=progress,
    )


def _verified_layer(manifest: bytes, ref: ArtifactRef) -> Layer:
    """The manifest's model layer, once the manifest is proven to be the pinned one."""
    actual = sha256_digest(manifest)
    if actual != ref.digest:
        raise mismatch(f"manifest of {ref.reference}:{ref.tag}", ref.digest, actual)
    layer = parse_manifest(manifest, f"manifest {ref.digest}")
    if layer.digest != ref.blob_digest:
        raise mismatch(
            f"model layer listed in manifest {ref.digest}", ref.blob_digest, layer.digest
        )
    if layer.size != ref.size:
        raise DigestMismatch(
            f"model layer listed in manifest {ref.digest}: size mismatch: "
            f"expected {ref.size} bytes, got {layer.size}"
        )
    return layer
