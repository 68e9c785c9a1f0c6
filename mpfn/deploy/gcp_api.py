"""The one wrapper through which deploy talks to Google Cloud.

Cloud Run v2 and Cloud Scheduler v1 go through their official client libraries with the
REST transport; IAM service accounts and project IAM policies through the same
credentials over plain REST; buckets through google-cloud-storage. Endpoints come from
the config (`deploy.gcp.endpoints`); when any is set, calls use anonymous credentials, as
emulators and stand-ins expect. Readers return None for "not found"; every other failure
becomes a one-line `GcpError`. No deploy logic lives here.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mpfn.deploy.errors import DeployFailure

T = TypeVar("T")
IAM = "https://iam.googleapis.com"
RESOURCE_MANAGER = "https://cloudresourcemanager.googleapis.com"


def sdk(module: str) -> Any:
    """Load a Google client library module by name: they are optional, imported on use,
    and typed loosely here (their stubs would shadow the untyped `google.cloud.storage`)."""
    return importlib.import_module(module)


class GcpError(DeployFailure, RuntimeError):
    """A Google Cloud call failed; the message is one line naming the operation."""


@dataclass(frozen=True)
class GcpSettings:
    project: str
    region: str
    run_endpoint: str | None = None
    scheduler_endpoint: str | None = None
    storage_endpoint: str | None = None
    iam_endpoint: str | None = None
    resourcemanager_endpoint: str | None = None

    @property
    def emulated(self) -> bool:
        return any(
            (
                self.run_endpoint,
                self.scheduler_endpoint,
                self.storage_endpoint,
                self.iam_endpoint,
                self.resourcemanager_endpoint,
            )
        )

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


NO_CREDENTIALS = (
    "no Google Cloud credentials found (deploy reads the project even for --dry-run): run "
    "`gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a "
    "service account key file"
)


def default_credentials() -> Any:
    """Application Default Credentials, or a one-line `GcpError` saying how to provide them."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, _ = google.auth.default()
    except DefaultCredentialsError as exc:
        message = _one_line(exc)
        if "not found" in message.lower() or "could not automatically" in message.lower():
            raise GcpError(NO_CREDENTIALS) from exc
        raise GcpError(f"Google Cloud credentials: {message}") from exc
    return credentials


class GcpApi:
    """Typed calls used by the GCP target; clients are built once, on first use."""

    def __init__(self, settings: GcpSettings, *, credentials: Any = None) -> None:
        self.settings = settings
        self._credentials = credentials
        self._clients: dict[str, Any] = {}

    @property
    def credentials(self) -> Any:
        if self._credentials is None:
            if self.settings.emulated:
                from google.auth.credentials import AnonymousCredentials

                self._credentials = AnonymousCredentials()
            else:
                self._credentials = default_credentials()
        return self._credentials

    def _client(self, name: str, build: Callable[[], Any]) -> Any:
        if name not in self._clients:
            self._clients[name] = build()
        return self._clients[name]

    def _options(self, endpoint: str | None) -> dict[str, Any]:
        return {"api_endpoint": endpoint} if endpoint else {}

    @property
    def services(self) -> Any:
        run_v2 = sdk("google.cloud.run_v2")

        return self._client(
            "services",
            lambda: run_v2.ServicesClient(
                credentials=self.credentials,
                transport="rest",
                client_options=self._options(self.settings.run_endpoint),
            ),
        )

    @property
    def jobs(self) -> Any:
        run_v2 = sdk("google.cloud.run_v2")

        return self._client(
            "jobs",
            lambda: run_v2.JobsClient(
                credentials=self.credentials,
                transport="rest",
                client_options=self._options(self.settings.run_endpoint),
            ),
        )

    @property
    def scheduler(self) -> Any:
        scheduler_v1 = sdk("google.cloud.scheduler_v1")

        return self._client(
            "scheduler",
            lambda: scheduler_v1.CloudSchedulerClient(
                credentials=self.credentials,
                transport="rest",
                client_options=self._options(self.settings.scheduler_endpoint),
            ),
        )

    @property
    def storage(self) -> Any:
        storage = sdk("google.cloud.storage")

        def build() -> Any:
            if self.settings.storage_endpoint:
                return storage.Client(
                    project=self.settings.project,
                    credentials=self.credentials,
                    client_options={"api_endpoint": self.settings.storage_endpoint},
                )
            return storage.Client(project=self.settings.project, credentials=self.credentials)

        return self._client("storage", build)

    @property
    def session(self) -> Any:
        from google.auth.transport.requests import AuthorizedSession

        return self._client("session", lambda: AuthorizedSession(self.credentials))

    def call(self, what: str, fn: Callable[[], T]) -> T:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as authexc

        try:
            return fn()
        except (gexc.GoogleAPIError, authexc.GoogleAuthError, OSError) as exc:
            raise GcpError(f"{what}: {_one_line(exc)}") from None

    def find(self, what: str, fn: Callable[[], T]) -> T | None:
        from google.api_core import exceptions as gexc

        try:
            return fn()
        except gexc.NotFound:
            return None
        except gexc.GoogleAPIError as exc:
            raise GcpError(f"{what}: {_one_line(exc)}") from None

    # -- REST (IAM, Resource Manager) ----------------------------------------------------

    def rest(self, method: str, url: str, body: Any = None) -> dict[str, Any] | None:
        """One JSON call; None on 404, `GcpError` on any other failure."""
        try:
            response = self.session.request(method, url, json=body, timeout=30)
        except Exception as exc:  # requests' and google-auth's transport errors
            raise GcpError(f"{method} {url}: {_one_line(exc)}") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise GcpError(f"{method} {url}: HTTP {response.status_code}: {response.text[:300]}")
        data: dict[str, Any] = json.loads(response.text or "{}")
        return data

    # -- storage -------------------------------------------------------------------------

    def get_bucket(self, name: str) -> Any:
        return self.find(f"storage get bucket {name}", lambda: self.storage.get_bucket(name))

    def create_bucket(self, name: str, location: str) -> None:
        def create() -> Any:
            bucket = self.storage.bucket(name)
            bucket.iam_configuration.uniform_bucket_level_access_enabled = True
            return self.storage.create_bucket(bucket, location=location)

        self.call(f"storage create bucket {name}", create)

    def list_objects(self, bucket: str, limit: int) -> list[str]:
        return self.call(
            f"storage list {bucket}",
            lambda: [b.name for b in self.storage.list_blobs(bucket, max_results=limit)],
        )

    def delete_bucket(self, name: str) -> None:
        def delete() -> None:
            bucket = self.storage.bucket(name)
            for blob in list(self.storage.list_blobs(name)):
                blob.delete()
            bucket.delete()

        self.call(f"storage delete bucket {name}", delete)

    # -- service accounts and project policy ---------------------------------------------

    def _iam(self) -> str:
        return (self.settings.iam_endpoint or IAM).rstrip("/")

    def _accounts(self) -> str:
        return f"{self._iam()}/v1/projects/{self.settings.project}/serviceAccounts"

    def _rm(self) -> str:
        return (self.settings.resourcemanager_endpoint or RESOURCE_MANAGER).rstrip("/")

    def service_account_email(self, account_id: str) -> str:
        return f"{account_id}@{self.settings.project}.iam.gserviceaccount.com"

    def get_service_account(self, account_id: str) -> dict[str, Any] | None:
        email = self.service_account_email(account_id)
        return self.rest(
            "GET", f"{self._iam()}/v1/projects/{self.settings.project}/serviceAccounts/{email}"
        )

    def create_service_account(self, account_id: str, display_name: str) -> None:
        self.rest(
            "POST",
            self._accounts(),
            {"accountId": account_id, "serviceAccount": {"displayName": display_name}},
        )

    def delete_service_account(self, account_id: str) -> None:
        email = self.service_account_email(account_id)
        self.rest(
            "DELETE", f"{self._iam()}/v1/projects/{self.settings.project}/serviceAccounts/{email}"
        )

    def get_project_policy(self) -> dict[str, Any]:
        url = f"{self._rm()}/v1/projects/{self.settings.project}:getIamPolicy"
        found = self.rest("POST", url, {"options": {"requestedPolicyVersion": 3}})
        return found or {}

    def set_project_policy(self, policy: dict[str, Any]) -> None:
        url = f"{self._rm()}/v1/projects/{self.settings.project}:setIamPolicy"
        self.rest("POST", url, {"policy": {**policy, "version": 3}})
