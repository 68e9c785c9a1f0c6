"""Push and pull model artifacts to an OCI registry through oras-py.

`HOST[:PORT]/REPO` names the repository. Requests go through `oras.provider.Registry`,
which supplies credentials from the docker config / credential helpers (and ECR tokens),
so no secret ever passes through mpfn's arguments or logs. Blob uploads are streamed
(monolithic PUT of a file reader); manifests are sent as the exact canonical bytes whose
digest mpfn records, and pulls resolve them by that digest only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import requests

from mpfn.artifacts.errors import ArtifactError
from mpfn.artifacts.media import MANIFEST_MEDIA_TYPE
from mpfn.artifacts.streams import CHUNK, Progress
from mpfn.extras import install_hint

_REPO_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]{1,5})?$")
_ECR_RE = re.compile(r"^\d{12}\.dkr\.ecr\.[^.]+\.amazonaws\.com$")


def split_registry(registry: str) -> tuple[str, str]:
    """`HOST[:PORT]/REPO` -> (host, repo), rejecting anything else with a clear message."""
    host, _, repo = registry.strip().partition("/")
    if not _HOST_RE.match(host) or not _REPO_RE.match(repo):
        raise ArtifactError(
            f"invalid registry {registry!r}: expected HOST[:PORT]/REPO with a lowercase REPO"
        )
    return host, repo


class _FileReader:
    """A sized file-like body that reports upload progress as it is read."""

    def __init__(self, fh: IO[bytes], size: int, progress: Progress | None) -> None:
        self._fh, self._size, self._progress, self._done = fh, size, progress, 0

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        block = self._fh.read(n if n and n > 0 else CHUNK)
        self._done += len(block)
        if self._progress and block:
            self._progress(self._done, self._size)
        return block


class RegistryClient:
    """One repository of one registry, addressed through an oras-py `Registry`."""

    def __init__(self, registry: str, *, insecure: bool = False) -> None:
        try:
            import oras.provider
        except ImportError:
            raise ArtifactError(
                "pushing to a registry needs oras: " + install_hint("oci")
            ) from None
        self.host, self.repo = split_registry(registry)
        self.reference = f"{self.host}/{self.repo}"
        backend = "ecr" if _ECR_RE.match(self.host) else "token"
        self._oras = oras.provider.Registry(
            hostname=self.host, insecure=insecure, auth_backend=backend
        )
        self._scheme = "http" if insecure else "https"
        self._container = self._oras.get_container(self.reference)
        self._oras.auth.load_configs(self._container)

    def _url(self, path: str) -> str:
        return f"{self._scheme}://{path}"

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        # The undecorated request: oras's retry wrapper sleeps for minutes on a dead host.
        do_request = type(self._oras).do_request
        once = getattr(do_request, "__wrapped__", do_request)
        try:
            response: requests.Response = once(self._oras, url, method, **kwargs)
        except requests.RequestException as exc:
            raise ArtifactError(
                f"cannot reach registry {self.host}: {type(exc).__name__}"
            ) from None
        except ValueError as exc:  # oras: authentication could not be satisfied
            raise ArtifactError(f"registry {self.host}: {exc}") from None
        if response.status_code in (401, 403):
            raise ArtifactError(f"registry {self.host}: access denied ({response.status_code})")
        return response

    def _fail(self, what: str, response: requests.Response) -> ArtifactError:
        detail = ""
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
        except ValueError:
            detail = ""  # not a JSON error body: the status says enough
        return ArtifactError(
            f"{what} on {self.reference}: HTTP {response.status_code}"
            + (f" ({detail})" if detail else "")
        )

    # -- push ----------------------------------------------------------------------------

    def blob_exists(self, digest: str) -> bool:
        return self._request("HEAD", self._url(self._container.get_blob_url(digest))).ok

    def upload_blob(
        self, digest: str, size: int, body: bytes | Path, progress: Progress | None = None
    ) -> None:
        """Upload one blob unless the repository already has it."""
        if self.blob_exists(digest):
            if progress:
                progress(size, size)
            return
        started = self._request(
            "POST",
            self._url(self._container.upload_blob_url()),
            headers={"Content-Length": "0"},
        )
        location = started.headers.get("Location", "")
        if started.status_code != 202 or not location:
            raise self._fail("starting blob upload", started)
        if not location.startswith("http"):
            location = f"{self._scheme}://{self.host}{location}"
        location += ("&" if "?" in location else "?") + f"digest={digest}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if isinstance(body, bytes):
            done = self._request("PUT", location, data=body, headers=headers)
        else:
            with body.open("rb") as fh:
                reader = _FileReader(fh, size, progress)
                done = self._request("PUT", location, data=reader, headers=headers)
        if done.status_code != 201:
            raise self._fail(f"uploading blob {digest}", done)

    def put_manifest(self, body: bytes, digest: str, tag: str) -> None:
        response = self._request(
            "PUT",
            self._url(self._container.manifest_url(tag)),
            data=body,
            headers={"Content-Type": MANIFEST_MEDIA_TYPE},
        )
        if response.status_code != 201:
            raise self._fail(f"pushing manifest {tag}", response)
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != digest:
            raise ArtifactError(f"registry stored manifest {tag} as {stored}, expected {digest}")

    # -- pull ----------------------------------------------------------------------------

    def get_manifest(self, digest: str) -> bytes:
        response = self._request(
            "GET",
            self._url(self._container.manifest_url(digest)),
            headers={"Accept": MANIFEST_MEDIA_TYPE},
        )
        if response.status_code == 404:
            raise ArtifactError(f"manifest {digest} not found in {self.reference}")
        if response.status_code != 200:
            raise self._fail(f"fetching manifest {digest}", response)
        return response.content

    def blob_chunks(self, digest: str) -> Iterator[bytes]:
        response = self._request(
            "GET", self._url(self._container.get_blob_url(digest)), stream=True
        )
        with response:
            if response.status_code == 404:
                raise ArtifactError(f"blob {digest} not found in {self.reference}")
            if response.status_code != 200:
                raise self._fail(f"fetching blob {digest}", response)
            try:
                yield from response.iter_content(CHUNK)
            except requests.RequestException as exc:
                raise ArtifactError(
                    f"download of {digest} from {self.host} failed: {type(exc).__name__}"
                ) from None
