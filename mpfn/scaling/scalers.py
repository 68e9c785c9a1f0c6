"""Read and set a pool's replica count through its platform's API.

- `ecs`: the service's `desiredCount` (DescribeServices, UpdateService), with the AWS
  SDK's credentials (a role allowed `ecs:UpdateService` on that service);
- `cloudrun`: the service's `scaling.minInstanceCount` (Cloud Run Admin API v2; Cloud Run
  itself starts instances for requests beyond it and stops idle ones down to it), with
  Google application default credentials;
- `k8s`: the Deployment's scale subresource (`apps/v1 .../deployments/NAME/scale`), with
  the pod's service account token (a Role allowing `patch` on `deployments/scale`);
- `local`: a pool of `mpfn up`, through its control endpoint (`MPFN_SCALE_TOKEN`).

Every call goes through clients the caller passes (`ScalerClients`), so tests point them
at moto, the GCP stand-in, a Kubernetes API stand-in or a local stack.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mpfn.documents import Pool, PoolScaling

if TYPE_CHECKING:  # not imported at run time: a router package without httpx wakes ECS
    import httpx

K8S_API = "https://kubernetes.default.svc"
K8S_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RUN_API = "https://run.googleapis.com"
TOKEN_ENV = "MPFN_SCALE_TOKEN"


class ScaleError(RuntimeError):
    """The size could not be read or set; the message says which pool and why."""


class Scaler(Protocol):
    async def get(self) -> int: ...

    async def set(self, replicas: int) -> None: ...


def _ecs_client(region: str, endpoint_url: str | None) -> Any:
    import boto3

    return boto3.client("ecs", region_name=region, endpoint_url=endpoint_url)


async def _google_token() -> str:
    def fetch() -> str:
        import google.auth
        import google.auth.transport.requests

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        credentials.refresh(google.auth.transport.requests.Request())
        return str(credentials.token)

    return await asyncio.to_thread(fetch)


def _k8s_token() -> str:
    return (K8S_ACCOUNT / "token").read_text().strip()


@dataclass
class ScalerClients:
    """What scalers call through; every field can be replaced (tests, other clouds)."""

    http: httpx.AsyncClient | None  # for Cloud Run, Kubernetes and local pools
    ecs: Callable[[str, str | None], Any] = _ecs_client
    google_token: Callable[[], Awaitable[str]] = _google_token
    k8s_token: Callable[[], str] = _k8s_token
    local_token: str | None = field(default_factory=lambda: os.environ.get(TOKEN_ENV))


def _http(clients: ScalerClients, pool: str) -> httpx.AsyncClient:
    if clients.http is None:
        raise ScaleError(f"pool {pool}: no HTTP client to reach its scaling API (httpx)")
    return clients.http


def _fail(pool: str, what: str, exc: BaseException) -> ScaleError:
    detail = " ".join(str(exc).split())[:300] or type(exc).__name__
    return ScaleError(f"pool {pool}: {what} failed: {detail}")


class EcsScaler:
    def __init__(self, pool: str, spec: PoolScaling, clients: ScalerClients) -> None:
        self.pool, self.spec = pool, spec
        self.client = clients.ecs(str(spec.region), spec.api_url)

    async def get(self) -> int:
        def run() -> int:
            found = self.client.describe_services(
                cluster=self.spec.cluster, services=[self.spec.service]
            )
            services = [s for s in found.get("services", []) if s.get("status") != "INACTIVE"]
            if not services:
                raise LookupError(f"no service {self.spec.service} in {self.spec.cluster}")
            return int(services[0]["desiredCount"])

        try:
            return await asyncio.to_thread(run)
        except Exception as exc:
            raise _fail(self.pool, "reading the ECS service", exc) from None

    async def set(self, replicas: int) -> None:
        def run() -> None:
            self.client.update_service(
                cluster=self.spec.cluster, service=self.spec.service, desiredCount=replicas
            )

        try:
            await asyncio.to_thread(run)
        except Exception as exc:
            raise _fail(self.pool, "updating the ECS service", exc) from None


class CloudRunScaler:
    def __init__(self, pool: str, spec: PoolScaling, clients: ScalerClients) -> None:
        self.pool, self.spec, self.clients = pool, spec, clients
        self.url = f"{(spec.api_url or RUN_API).rstrip('/')}/v2/{spec.service}"

    async def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.clients.google_token()}"}

    async def _service(self) -> dict[str, Any]:
        answer = await _http(self.clients, self.pool).get(self.url, headers=await self._headers())
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    async def get(self) -> int:
        try:
            service = await self._service()
        except Exception as exc:
            raise _fail(self.pool, "reading the Cloud Run service", exc) from None
        return int((service.get("scaling") or {}).get("minInstanceCount") or 0)

    async def set(self, replicas: int) -> None:
        try:
            service = await self._service()
            service["scaling"] = {**(service.get("scaling") or {}), "minInstanceCount": replicas}
            answer = await _http(self.clients, self.pool).patch(
                self.url, json=service, headers=await self._headers()
            )
            answer.raise_for_status()
        except Exception as exc:
            raise _fail(self.pool, "updating the Cloud Run service", exc) from None


class K8sScaler:
    def __init__(self, pool: str, spec: PoolScaling, clients: ScalerClients) -> None:
        self.pool, self.spec, self.clients = pool, spec, clients
        api = (spec.api_url or K8S_API).rstrip("/")
        self.url = (
            f"{api}/apis/apps/v1/namespaces/{spec.namespace}/deployments/{spec.deployment}/scale"
        )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.clients.k8s_token()}"}

    async def get(self) -> int:
        try:
            answer = await _http(self.clients, self.pool).get(self.url, headers=self._headers())
            answer.raise_for_status()
            return int((answer.json().get("spec") or {}).get("replicas") or 0)
        except Exception as exc:
            raise _fail(self.pool, "reading the Deployment's scale", exc) from None

    async def set(self, replicas: int) -> None:
        try:
            answer = await _http(self.clients, self.pool).patch(
                self.url,
                json={"spec": {"replicas": replicas}},
                headers={**self._headers(), "Content-Type": "application/merge-patch+json"},
            )
            answer.raise_for_status()
        except Exception as exc:
            raise _fail(self.pool, "patching the Deployment's scale", exc) from None


class LocalScaler:
    """A pool of `mpfn up`: its control endpoint starts and stops the pool's worker."""

    def __init__(self, pool: str, spec: PoolScaling, clients: ScalerClients) -> None:
        self.pool, self.clients = pool, clients
        if not spec.api_url:
            raise ScaleError(f"pool {pool}: scaling kind local needs api_url (mpfn up's)")
        self.url = f"{spec.api_url.rstrip('/')}/pools/{pool}"

    def _headers(self) -> dict[str, str]:
        token = self.clients.local_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self) -> int:
        try:
            answer = await _http(self.clients, self.pool).get(self.url, headers=self._headers())
            answer.raise_for_status()
            return int(answer.json()["replicas"])
        except Exception as exc:
            raise _fail(self.pool, "reading the local pool", exc) from None

    async def set(self, replicas: int) -> None:
        try:
            answer = await _http(self.clients, self.pool).post(
                f"{self.url}/scale", json={"replicas": replicas}, headers=self._headers()
            )
            answer.raise_for_status()
        except Exception as exc:
            raise _fail(self.pool, "scaling the local pool", exc) from None


SCALERS: dict[str, Callable[[str, PoolScaling, ScalerClients], Scaler]] = {
    "ecs": EcsScaler,
    "cloudrun": CloudRunScaler,
    "k8s": K8sScaler,
    "local": LocalScaler,
}


def scaler_for(pool: Pool, clients: ScalerClients) -> Scaler:
    """The scaler of `pool`; ScaleError when it has no `scaling`."""
    if pool.scaling is None:
        raise ScaleError(f"pool {pool.id} has no scaling settings: its size is fixed")
    return SCALERS[pool.scaling.kind](pool.id, pool.scaling, clients)
