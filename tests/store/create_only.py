"""A store on which usage may only be created, as on GCS with `roles/storage.objectCreator`.

The GCP deployment grants the router that role on `usage/`: it may create objects there,
but replacing an object needs `storage.objects.delete` as well, which it lacks.
fake-gcs-server (like every other test backend) enforces no IAM, so `CreateOnlyUsage`
wraps a real store and refuses, under `usage/`, every put to a key that exists (whatever
its preconditions) and every delete, with the error `GCSStore` raises on HTTP 403.
Everything else goes to the wrapped store unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mpfn.store.base import KeyNotFound, StoreUnavailable
from mpfn.usage import USAGE_PREFIX
from tests.store.passthrough import PassThrough


@dataclass
class CreateOnlyUsage(PassThrough):
    """`inner` with create-only access to `usage/`; `refused` lists the keys refused."""

    refused: list[str] = field(default_factory=list)

    def put(
        self, key: str, body: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        if key.startswith(USAGE_PREFIX) and self._exists(key):
            raise self._forbidden(key, "storage.objects.delete")
        return self.inner.put(key, body, if_match=if_match, if_absent=if_absent)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        if key.startswith(USAGE_PREFIX):
            raise self._forbidden(key, "storage.objects.delete")
        self.inner.delete(key, if_match=if_match)

    def _exists(self, key: str) -> bool:
        try:
            self.inner.get(key)
        except KeyNotFound:
            return False
        return True

    def _forbidden(self, key: str, permission: str) -> StoreUnavailable:
        """What `GCSStore` raises when GCS answers 403 (`mpfn.store.gcs.translate_error`)."""
        self.refused.append(key)
        return StoreUnavailable(
            f"{self.url}: credentials refused (403 POST {key}: the caller does not have "
            f"{permission} access to the object)"
        )
