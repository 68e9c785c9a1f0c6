"""A Python client of a deployment's routers with failover between sites.

`Client.from_state(store)` reads the routers the state records (`mpfn.entrypoints`);
`Client.infer(model, body)` sends a v2 request to the preferred site, then to the others
when one is down, signing each as its entry says (`mpfn.client.signing`). See
docs/client.md.
"""

from mpfn.client.errors import AllRoutersFailed, Attempt, ClientError, RouterError, SigningError
from mpfn.client.failover import API_KEY_ENV, FAILOVER_STATUSES, Client, Served
from mpfn.client.signing import (
    SIGNERS,
    BearerKey,
    GoogleIdToken,
    SignerFactory,
    SigV4Signer,
    botocore_credentials,
    google_id_token,
)

__all__ = [
    "API_KEY_ENV",
    "FAILOVER_STATUSES",
    "SIGNERS",
    "AllRoutersFailed",
    "Attempt",
    "BearerKey",
    "Client",
    "ClientError",
    "GoogleIdToken",
    "RouterError",
    "Served",
    "SigV4Signer",
    "SignerFactory",
    "SigningError",
    "botocore_credentials",
    "google_id_token",
]
