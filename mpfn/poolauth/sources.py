"""Fetch what a secret reference names, through injectable clients.

`env:` and `file:` are local reads; `aws-sm:` calls Secrets Manager through a boto3 client
(endpoint from the usual AWS settings, e.g. `AWS_ENDPOINT_URL`); `gcp-sm:` calls Secret
Manager's REST API with an access token from the metadata server (base URLs from
`MPFN_GCP_SECRET_MANAGER_URL` and `GCE_METADATA_HOST`); `k8s:` reads a Secret through the
Kubernetes API with the pod's service-account token (`MPFN_K8S_API_URL`, else the
in-cluster address). Every failure is a `SecretUnavailable` naming the reference and why,
never a value.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpfn.poolauth.refs import SecretRef, gcp_version_name

if TYPE_CHECKING:  # httpx is imported on first use: the router's Lambda zip leaves it out
    import httpx

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class SecretUnavailable(Exception):
    """A reference that could not be resolved; the message is safe to show."""


def _field(ref: SecretRef, value: bytes) -> bytes:
    if ref.field is None:
        return value
    try:
        doc = json.loads(value)
        picked = doc[ref.field]
    except (ValueError, KeyError, TypeError):
        raise SecretUnavailable(f"{ref}: the secret is not a JSON object with that field") from None
    return (picked if isinstance(picked, str) else json.dumps(picked)).encode()


class Sources:
    """Resolves references; every client is injectable, every default comes from env."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
        aws_client: Callable[[], Any] | None = None,
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self._http = http
        self._aws_factory = aws_client
        self._aws: Any = None
        self._gcp_token: tuple[str, float] | None = None
        self._k8s_http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        return self._http

    async def aclose(self) -> None:
        """Close the clients this object made or was given; later calls make new ones."""
        for client in (self._http, self._k8s_http):
            if client is not None:
                await client.aclose()
        self._http = self._k8s_http = None

    async def fetch(self, ref: SecretRef) -> bytes:
        if ref.scheme == "env":
            value = self.environ.get(ref.location)
            if not value:
                raise SecretUnavailable(f"{ref}: not set")
            return value.encode()
        if ref.scheme == "file":
            try:
                return await asyncio.to_thread(Path(ref.location).read_bytes)
            except OSError as exc:
                raise SecretUnavailable(f"{ref}: {exc.strerror or type(exc).__name__}") from None
        if ref.scheme == "aws-sm":
            return _field(ref, await asyncio.to_thread(self._aws_secret, ref))
        if ref.scheme == "gcp-sm":
            return _field(ref, await self._gcp_secret(ref))
        return await self._k8s_secret(ref)

    # -- AWS ---------------------------------------------------------------------------

    def _aws_secret(self, ref: SecretRef) -> bytes:
        try:
            if self._aws is None:
                if self._aws_factory is not None:
                    self._aws = self._aws_factory()
                else:
                    import boto3

                    self._aws = boto3.client("secretsmanager")
            answer = self._aws.get_secret_value(SecretId=ref.location)
        except Exception as exc:  # botocore errors carry codes, never the secret
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            raise SecretUnavailable(f"{ref}: {code or type(exc).__name__}") from None
        if "SecretString" in answer:
            return str(answer["SecretString"]).encode()
        return bytes(answer.get("SecretBinary", b""))

    # -- GCP ---------------------------------------------------------------------------

    def _metadata_url(self, path: str) -> str:
        host = self.environ.get("GCE_METADATA_HOST", "metadata.google.internal")
        base = host if host.startswith("http") else f"http://{host}"
        return f"{base}/computeMetadata/v1/instance/service-accounts/default/{path}"

    async def _metadata(self, path: str, params: Mapping[str, str] | None = None) -> str:
        try:
            answer = await self.http.get(
                self._metadata_url(path), params=params, headers={"Metadata-Flavor": "Google"}
            )
        except _http_errors() as exc:
            raise SecretUnavailable(f"metadata server: {type(exc).__name__}") from None
        if answer.status_code != 200:
            raise SecretUnavailable(f"metadata server: HTTP {answer.status_code}")
        return answer.text

    async def gcp_access_token(self) -> str:
        now = time.monotonic()
        if self._gcp_token is not None and self._gcp_token[1] > now:
            return self._gcp_token[0]
        try:
            doc = json.loads(await self._metadata("token"))
            token = str(doc["access_token"])
            expires = float(doc.get("expires_in", 300))
        except (ValueError, KeyError) as exc:
            raise SecretUnavailable(f"metadata server token: {type(exc).__name__}") from None
        self._gcp_token = (token, now + max(expires - 60, 0))
        return token

    async def gcp_id_token(self, audience: str) -> str:
        """A Google-signed ID token for `audience` (Cloud Run, IAP, ...)."""
        token = await self._metadata("identity", {"audience": audience, "format": "full"})
        return token.strip()

    async def _gcp_secret(self, ref: SecretRef) -> bytes:
        base = self.environ.get(
            "MPFN_GCP_SECRET_MANAGER_URL", "https://secretmanager.googleapis.com"
        ).rstrip("/")
        token = await self.gcp_access_token()
        url = f"{base}/v1/{gcp_version_name(ref)}:access"
        try:
            answer = await self.http.get(url, headers={"Authorization": f"Bearer {token}"})
        except _http_errors() as exc:
            raise SecretUnavailable(f"{ref}: {type(exc).__name__}") from None
        if answer.status_code != 200:
            raise SecretUnavailable(f"{ref}: HTTP {answer.status_code}")
        try:
            return base64.b64decode(answer.json()["payload"]["data"])
        except (ValueError, KeyError, TypeError):
            raise SecretUnavailable(f"{ref}: unexpected answer from Secret Manager") from None

    # -- Kubernetes --------------------------------------------------------------------

    def _k8s_base(self) -> str:
        url = self.environ.get("MPFN_K8S_API_URL")
        if url:
            return url.rstrip("/")
        host = self.environ.get("KUBERNETES_SERVICE_HOST")
        port = self.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise SecretUnavailable("k8s: not in a cluster (no KUBERNETES_SERVICE_HOST)")
        return f"https://{host}:{port}"

    def _k8s_client(self) -> httpx.AsyncClient:
        """The injected client, else one trusting the cluster's CA (the pod's `ca.crt`)."""
        if self._http is not None:
            return self._http
        if self._k8s_http is None:
            ca = Path(self.environ.get("MPFN_K8S_CA_FILE", str(SA_DIR / "ca.crt")))
            verify: Any = str(ca) if ca.is_file() else True
            import httpx

            self._k8s_http = httpx.AsyncClient(timeout=10.0, verify=verify)
        return self._k8s_http

    async def _k8s_secret(self, ref: SecretRef) -> bytes:
        namespace, name, key = ref.location.split("/")
        base = self._k8s_base()
        token_file = Path(self.environ.get("MPFN_K8S_TOKEN_FILE", str(SA_DIR / "token")))
        try:
            token = (await asyncio.to_thread(token_file.read_text)).strip()
        except OSError:
            raise SecretUnavailable(f"{ref}: no service-account token at {token_file}") from None
        url = f"{base}/api/v1/namespaces/{namespace}/secrets/{name}"
        try:
            answer = await self._k8s_client().get(url, headers={"Authorization": f"Bearer {token}"})
        except _http_errors() as exc:
            raise SecretUnavailable(f"{ref}: {type(exc).__name__}") from None
        if answer.status_code != 200:
            raise SecretUnavailable(f"{ref}: HTTP {answer.status_code}")
        try:
            return base64.b64decode(answer.json()["data"][key])
        except (ValueError, KeyError, TypeError):
            raise SecretUnavailable(f"{ref}: the secret has no key {key!r}") from None


def _http_errors() -> type[Exception]:
    import httpx

    return httpx.HTTPError
