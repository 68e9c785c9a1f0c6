"""OCI media types and manifests for mpfn model artifacts (pure functions, no I/O).

A model version is one OCI image manifest (spec v1.1 artifact form): `artifactType` is
`ARTIFACT_TYPE`, the config is the empty descriptor, and a single layer holds the model
file, titled with its filename. Manifests and indexes are serialised canonically (sorted
keys, no whitespace) so the same model file always yields the same manifest digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from mpfn.artifacts.errors import ArtifactError

ARTIFACT_TYPE = "application/vnd.mpfn.model.v1"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"
MODEL_NAME = "io.mpfn.model.name"
MODEL_VERSION = "io.mpfn.model.version"
MODEL_FORMAT = "io.mpfn.model.format"

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_FMT_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")


def layer_media_type(fmt: str) -> str:
    """Media type of a model file layer, e.g. `application/vnd.mpfn.model.layer.v1.onnx`."""
    if not _FMT_RE.match(fmt):
        raise ArtifactError(f"invalid model format {fmt!r}: use lowercase letters and digits")
    return f"application/vnd.mpfn.model.layer.v1.{fmt}"


def model_tag(name: str, version: str) -> str:
    """The tag (and index.json ref name) of one model version: `<name>-<version>`."""
    tag = f"{name}-{version}"
    if not _TAG_RE.match(tag):
        raise ArtifactError(f"cannot tag {name} {version}: {tag!r} is not a valid OCI tag")
    return tag


def sha256_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def digest_hex(digest: str) -> str:
    """`sha256:<hex>` -> `<hex>`, rejecting anything else (digests become paths)."""
    if not _DIGEST_RE.match(digest):
        raise ArtifactError(f"unsupported digest {digest!r}: expected sha256:<64 hex>")
    return digest.split(":", 1)[1]


def canonical_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Layer:
    """The model file's descriptor inside a manifest."""

    digest: str
    size: int
    media_type: str
    filename: str


def build_manifest(layer: Layer, *, name: str, version: str, fmt: str) -> bytes:
    """The canonical manifest bytes for one model file."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": 2},
        "layers": [
            {
                "mediaType": layer.media_type,
                "digest": layer.digest,
                "size": layer.size,
                "annotations": {TITLE: layer.filename},
            }
        ],
        "annotations": {MODEL_NAME: name, MODEL_VERSION: version, MODEL_FORMAT: fmt},
    }
    return canonical_json(manifest)


def parse_manifest(body: bytes, where: str) -> Layer:
    """Return the model layer of a verified manifest; ArtifactError when it is not one."""
    try:
        manifest = json.loads(body)
        layers = manifest["layers"]
        if manifest.get("schemaVersion") != 2 or not isinstance(layers, list) or not layers:
            raise ValueError("not an image manifest with layers")
        first = layers[0]
        digest_hex(first["digest"])
        size = first["size"]
        if not isinstance(size, int) or size < 0:
            raise ValueError("layer size is not a non-negative integer")
        title = (first.get("annotations") or {}).get(TITLE) or first["digest"]
        return Layer(first["digest"], size, str(first["mediaType"]), str(title))
    except (ValueError, KeyError, TypeError, AttributeError, ArtifactError) as exc:
        raise ArtifactError(f"{where}: not an mpfn model manifest ({exc})") from None


def empty_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}


def add_to_index(index: dict[str, Any], *, digest: str, size: int, tag: str) -> dict[str, Any]:
    """A copy of `index` where `tag` names this manifest (a re-pushed tag moves)."""
    kept = [
        m for m in index.get("manifests") or [] if (m.get("annotations") or {}).get(REF_NAME) != tag
    ]
    kept.append(
        {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "digest": digest,
            "size": size,
            "annotations": {REF_NAME: tag},
        }
    )
    return {**index, "schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": kept}
