"""Models as OCI artifacts: push, pull and cache model files pinned by digest.

The default home of artifacts is an OCI image layout inside the state store (`oci/`);
`registry="HOST[:PORT]/REPO"` pushes to any OCI registry through oras-py instead. Every
pull verifies the manifest and model-file digests recorded in the `ArtifactRef`.
"""

from __future__ import annotations

from mpfn.artifacts.cache import cache_path, fetch_cached
from mpfn.artifacts.errors import ArtifactError, DigestMismatch
from mpfn.artifacts.media import ARTIFACT_TYPE, layer_media_type, model_tag
from mpfn.artifacts.models import pull_model, push_model

__all__ = [
    "ARTIFACT_TYPE",
    "ArtifactError",
    "DigestMismatch",
    "cache_path",
    "fetch_cached",
    "layer_media_type",
    "model_tag",
    "pull_model",
    "push_model",
]
