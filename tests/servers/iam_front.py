"""Stand-ins for the IAM front doors a deployed router sits behind, on loopback, each a
real HTTP server in a thread of the test process that checks credentials and forwards
what it accepts to a router (`target`), relaying the answer. NOT AWS and NOT Google.

- `function_url(...)`: a Lambda Function URL with `AuthType AWS_IAM`. A request must
  carry an AWS Signature Version 4 (`Authorization: AWS4-HMAC-SHA256 ...`) for service
  `lambda` in its region, by the one access key it knows, with `x-amz-date` within 15
  minutes and `x-amz-content-sha256` equal to the SHA-256 of the body it received. The
  signature is recomputed with botocore's `SigV4Auth` from the request as received
  (method, path, query, the signed headers, the body hash) and compared. Anything else
  gets 403 `{"Message": "Forbidden"}`.
- `cloud_run(...)`: a private Cloud Run service. The ID token (`X-Serverless-Authorization`,
  else `Authorization`, as `Bearer <token>`) must be an RS256 JWT signed by the key of an
  `IdTokenIssuer` (standing in for Google's signing keys), issued by
  `https://accounts.google.com`, unexpired and with the service's own URL as audience
  (checked with `google.auth.jwt.decode`). Anything else gets 401. The token is not
  forwarded; with `X-Serverless-Authorization`, `Authorization` reaches the service as
  sent.

`seen` holds the headers of every request each stand-in received.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

GOOGLE_ISSUER = "https://accounts.google.com"
SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$"
)
RELAYED = ("content-type", "x-mpfn-pool", "x-mpfn-route-reason", "www-authenticate")
MAX_SKEW_S = 15 * 60


@dataclass(frozen=True)
class AwsKey:
    access_key: str
    secret_key: str
    token: str | None = None


class IdTokenIssuer:
    """Signs Google-style ID tokens with an RSA key made here (standing in for Google's)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def issue(self, audience: str, *, now: float | None = None, lifetime_s: int = 3600) -> str:
        from google.auth import crypt, jwt

        issued = int(time.time() if now is None else now)
        claims = {
            "iss": GOOGLE_ISSUER,
            "aud": audience,
            "sub": "1234567890",
            "email": "client@project.iam.gserviceaccount.com",
            "iat": issued,
            "exp": issued + lifetime_s,
            "jti": uuid.uuid4().hex,
        }
        signer = crypt.RSASigner.from_string(self.private_pem, key_id="test-key")
        return str(jwt.encode(signer, claims).decode())


class FrontDoor:
    """One stand-in: `check(handler, body)` returns None to accept, else (status, body),
    and the headers to forward in place of the request's own."""

    name = "front door"

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.seen: list[dict[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())  # bound: no race

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def check(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        """Why the request is refused, or None."""
        raise NotImplementedError

    def refusal(self, why: str) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def forwarded_headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in headers.items() if k == "content-type"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        door = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                door.seen.append(headers)
                why = door.check(self.command, self.path, headers, body)
                if why is not None:
                    status, doc = door.refusal(why)
                    answer = json.dumps(doc).encode()
                    self._reply(status, answer, {"Content-Type": "application/json"})
                    return
                relayed = httpx.request(
                    self.command,
                    door.target + self.path,
                    content=body,
                    headers=door.forwarded_headers(headers),
                    timeout=30,
                )
                kept = {k: v for k, v in relayed.headers.items() if k.lower() in RELAYED}
                self._reply(relayed.status_code, relayed.content, kept)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


class FunctionUrl(FrontDoor):
    """A Lambda Function URL with AuthType AWS_IAM (see the module docstring)."""

    name = "Lambda Function URL"

    def __init__(self, target: str, key: AwsKey, region: str) -> None:
        super().__init__(target)
        self.key = key
        self.region = region
        self.refusals: list[str] = []

    def refusal(self, why: str) -> tuple[int, dict[str, Any]]:
        self.refusals.append(why)
        return 403, {"Message": "Forbidden"}

    def check(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        match = SIGV4.match(headers.get("authorization", ""))
        if match is None:
            return "no SigV4 Authorization header"
        access_key, day, region, service, signed, signature = match.groups()
        amz_date = headers.get("x-amz-date", "")
        if access_key != self.key.access_key:
            return "unknown access key"
        if (region, service) != (self.region, "lambda") or not amz_date.startswith(day):
            return "wrong credential scope"
        try:
            when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "bad x-amz-date"
        if abs(time.time() - when.timestamp()) > MAX_SKEW_S:
            return "x-amz-date too far from now"
        names = signed.split(";")
        if not {"host", "x-amz-date"} <= set(names) or any(n not in headers for n in names):
            return "host and x-amz-date must be signed, and every signed header present"
        if headers.get("x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
            return "x-amz-content-sha256 is not the hash of the body"
        if self.key.token is not None and headers.get("x-amz-security-token") != self.key.token:
            return "wrong session token"
        request = AWSRequest(
            method=method,
            url=f"http://{headers['host']}{path}",
            headers={n: headers[n] for n in names},
            data=body,
        )
        request.context["timestamp"] = amz_date
        auth = SigV4Auth(Credentials(self.key.access_key, self.key.secret_key), "lambda", region)
        canonical = auth.canonical_request(request)
        expected = auth.signature(auth.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, signature):
            return "signature mismatch"
        return None


class CloudRun(FrontDoor):
    """A private Cloud Run service (see the module docstring)."""

    name = "Cloud Run service"

    def __init__(self, target: str, issuer: IdTokenIssuer) -> None:
        super().__init__(target)
        self.issuer = issuer
        self.refusals: list[str] = []

    def refusal(self, why: str) -> tuple[int, dict[str, Any]]:
        self.refusals.append(why)
        return 401, {"error": "The request was not authenticated"}

    def check(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        from google.auth import jwt

        header = headers.get("x-serverless-authorization") or headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "no bearer ID token"
        try:
            claims = jwt.decode(token, certs=self.issuer.public_pem, audience=self.url)
        except ValueError as exc:
            return f"invalid ID token: {exc}"
        if claims.get("iss") != GOOGLE_ISSUER:
            return "wrong issuer"
        return None

    def forwarded_headers(self, headers: dict[str, str]) -> dict[str, str]:
        kept = super().forwarded_headers(headers)
        if "x-serverless-authorization" in headers and "authorization" in headers:
            kept["authorization"] = headers["authorization"]
        return kept


@contextlib.contextmanager
def serving(door: FrontDoor) -> Iterator[FrontDoor]:
    thread = threading.Thread(target=door.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield door
    finally:
        door.close()


@contextlib.contextmanager
def function_url(target: str, key: AwsKey, region: str) -> Iterator[FunctionUrl]:
    """A Function URL stand-in in front of `target`, serving until the block ends."""
    door = FunctionUrl(target, key, region)
    with serving(door):
        yield door


@contextlib.contextmanager
def cloud_run(target: str, issuer: IdTokenIssuer) -> Iterator[CloudRun]:
    """A private Cloud Run stand-in in front of `target`, serving until the block ends."""
    door = CloudRun(target, issuer)
    with serving(door):
        yield door
