"""Errors raised by the artifact layer; every message is one clear line.

Callers catch `ArtifactError` (anything that stops a push or pull) or its subclass
`DigestMismatch` (content that is not what its digest promises: tampered or corrupted).
"""

from __future__ import annotations


class ArtifactError(Exception):
    """A model artifact could not be pushed, found or pulled."""


class DigestMismatch(ArtifactError):
    """Content does not match the digest (or size) it is pinned to."""


def mismatch(what: str, expected: str, actual: str) -> DigestMismatch:
    """Build the standard mismatch error naming both digests."""
    return DigestMismatch(f"{what}: digest mismatch: expected {expected}, got {actual}")
