"""The handle artifact tests get for the loopback OCI registry they run against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RegistryServer:
    host: str  # 127.0.0.1:PORT
    root: Path  # filesystem storage root

    def blob_data(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
