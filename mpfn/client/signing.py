"""How the client authenticates to one router, by its entry's `auth`.

Each signer is an `httpx.Auth` flow:

- `BearerKey`: `Authorization: Bearer <mpfn API key>` (`auth: api-key`, and `none` when a
  key is given);
- `SigV4Signer`: AWS Signature Version 4 for service `lambda` in the entry's region, as a
  Lambda Function URL with `AuthType AWS_IAM` requires (body hash in
  `x-amz-content-sha256`), with credentials from a botocore session (environment, profile,
  role);
- `GoogleIdToken`: `Authorization: Bearer <Google ID token>` whose audience is the router
  URL, as a private Cloud Run service requires; the token is cached until shortly before it
  expires. With an API key too, the token moves to `X-Serverless-Authorization` (which
  Cloud Run checks instead) and the key takes `Authorization`.

`SIGNERS` maps each `auth` to a factory `(entry, api_key) -> httpx.Auth | None`; a client
can replace any of them. No signer logs or repeats a secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

import httpx

from mpfn.client.errors import SigningError
from mpfn.entrypoints import RouterEntry
from mpfn.extras import install_hint

SIGV4_SERVICE = "lambda"  # Lambda Function URLs are signed for the lambda service
REFRESH_MARGIN_S = 300.0  # fetch a new ID token when the cached one has less left


#: (the router's entry, the API key if any) -> how to sign requests to it (None: not at all).
SignerFactory = Callable[[RouterEntry, str | None], httpx.Auth | None]
#: botocore credentials (anything with `get_frozen_credentials()`), looked up when needed.
CredentialsSource = Callable[[], Any]
#: audience -> a Google-signed ID token for it.
TokenSource = Callable[[str], str]


def base_url(entry: RouterEntry) -> str:
    """The entry's URL without a trailing slash: paths are appended to it, and it is the
    ID token audience."""
    return str(entry.url).rstrip("/")


class BearerKey(httpx.Auth):
    """`Authorization: Bearer <key>`."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "BearerKey(***)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key}"
        yield request


def botocore_credentials() -> Any:
    """The default botocore session's credentials (environment, profile, SSO, role)."""
    try:
        import botocore.session
    except ImportError:
        raise SigningError("sigv4 routers need botocore: " + install_hint("aws")) from None
    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise SigningError("no AWS credentials to sign with (environment, ~/.aws profile or role)")
    return credentials


class SigV4Signer(httpx.Auth):
    """Signs each request with SigV4 for `service` in `region`: host, content type,
    `x-amz-content-sha256` (the body's SHA-256) and `x-amz-date` are signed."""

    requires_request_body = True

    def __init__(
        self,
        region: str,
        *,
        credentials: CredentialsSource = botocore_credentials,
        service: str = SIGV4_SERVICE,
    ) -> None:
        self.region = region
        self.service = service
        self._source = credentials
        self._credentials: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SigV4Signer(region={self.region!r}, service={self.service!r})"

    def credentials(self) -> Any:
        # botocore's refreshable credentials renew themselves in get_frozen_credentials()
        with self._lock:
            if self._credentials is None:
                self._credentials = self._source()
            return self._credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        from mpfn.poolauth.sigv4 import sigv4_headers

        body = request.content
        digest = hashlib.sha256(body).hexdigest()
        request.headers["x-amz-content-sha256"] = digest
        signed = {"host": request.headers["host"], "x-amz-content-sha256": digest}
        if "content-type" in request.headers:
            signed["content-type"] = request.headers["content-type"]
        try:
            headers = sigv4_headers(
                self.credentials(),
                self.region,
                self.service,
                request.method,
                str(request.url),
                body,
                signed,
            )
        except SigningError:
            raise
        except Exception as exc:  # botocore: no or unusable credentials
            raise SigningError(f"cannot sign with SigV4: {type(exc).__name__}") from None
        request.headers.update(headers)
        yield request


def google_id_token(audience: str) -> str:
    """An ID token for `audience` from Google's application default credentials
    (a service account key, the metadata server, `gcloud auth` as a service account)."""
    try:
        import google.auth.exceptions
        import google.auth.transport.requests
        import google.oauth2.id_token
    except ImportError:
        raise SigningError(
            "google-id-token routers need google-auth: " + install_hint("gcp")
        ) from None
    try:
        token = google.oauth2.id_token.fetch_id_token(
            google.auth.transport.requests.Request(), audience
        )
    except google.auth.exceptions.GoogleAuthError as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise SigningError(f"cannot get a Google ID token: {type(exc).__name__} {first}") from None
    return str(token)


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (read, not verified: the token is our own), or None."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


class GoogleIdToken(httpx.Auth):
    """A Google ID token for `audience` on each request, fetched from `token_source` and
    reused until `margin_s` before its `exp` (a token without `exp` is not reused)."""

    def __init__(
        self,
        audience: str,
        *,
        token_source: TokenSource = google_id_token,
        api_key: str | None = None,
        clock: Callable[[], float] = time.time,
        margin_s: float = REFRESH_MARGIN_S,
    ) -> None:
        self.audience = audience
        self._source = token_source
        self._api_key = api_key
        self._clock = clock
        self._margin_s = margin_s
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GoogleIdToken(audience={self.audience!r})"

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires - self._margin_s:
                token = self._source(self.audience)
                self._token, self._expires = token, token_expiry(token) or 0.0
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        if self._api_key:
            request.headers["X-Serverless-Authorization"] = f"Bearer {token}"
            request.headers["Authorization"] = f"Bearer {self._api_key}"
        else:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


def sign_none(entry: RouterEntry, api_key: str | None) -> httpx.Auth | None:
    return BearerKey(api_key) if api_key else None


def sign_api_key(entry: RouterEntry, api_key: str | None) -> httpx.Auth | None:
    if not api_key:
        raise SigningError("needs an API key (api_key=, --api-key or $MPFN_API_KEY)")
    return BearerKey(api_key)


def sign_sigv4(entry: RouterEntry, api_key: str | None) -> httpx.Auth | None:
    # The signature takes the Authorization header: an API key cannot travel with it.
    if not entry.region:
        raise SigningError("a sigv4 router entry needs its region")
    return SigV4Signer(entry.region)


def sign_google_id_token(entry: RouterEntry, api_key: str | None) -> httpx.Auth | None:
    return GoogleIdToken(base_url(entry), api_key=api_key)


SIGNERS: Mapping[str, SignerFactory] = {
    "none": sign_none,
    "api-key": sign_api_key,
    "sigv4": sign_sigv4,
    "google-id-token": sign_google_id_token,
}
