"""Signing per router entry, checked by verifiers in front of a real router: SigV4 by a
Lambda Function URL stand-in that recomputes the signature with botocore, Google ID
tokens by a private Cloud Run stand-in that verifies them (`tests.servers.iam_front`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from botocore.credentials import Credentials

from mpfn.client import Client, GoogleIdToken, RouterError, SignerFactory, SigV4Signer
from mpfn.client.signing import base_url, token_expiry
from mpfn.entrypoints import RouterEntry
from tests.client.conftest import BODY, DOUBLED, Routers, entry
from tests.servers.iam_front import AwsKey, IdTokenIssuer, cloud_run, function_url

REGION = "eu-west-1"
KEY = AwsKey("AKIAMPFNCLIENTTEST01", "client-test-secret-key/0123456789abcdefghij")


def static(key: AwsKey) -> Credentials:
    return Credentials(key.access_key, key.secret_key, key.token)


def sigv4_with(key: AwsKey) -> dict[str, SignerFactory]:
    """Signers whose SigV4 credentials are `key`."""

    def factory(e: RouterEntry, api_key: str | None) -> SigV4Signer:
        return SigV4Signer(e.region or "", credentials=lambda: static(key))

    return {"sigv4": factory}


def test_sigv4_requests_pass_a_function_url_verifier(routers: Routers) -> None:
    with function_url(routers.ok.url, KEY, REGION) as door:
        site = entry("aws", door.url, "sigv4", region=REGION)
        with Client([site], signers=sigv4_with(KEY)) as client:
            assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
            assert client.request("GET", "/v2/models/demo").json()["name"] == "demo"
        assert door.refusals == []
        first = door.seen[0]
        assert first["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY.access_key}/")
        assert f"/{REGION}/lambda/aws4_request" in first["authorization"]
        assert "x-amz-content-sha256" in first["authorization"]  # the body hash is signed


def test_sigv4_takes_credentials_from_the_botocore_session(
    routers: Routers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = AwsKey("ASIAMPFNCLIENTTEST02", "session-secret-key/abcdefghij0123456789", "tok3n")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key.secret_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tok3n")
    with function_url(routers.ok.url, key, REGION) as door:
        with Client([entry("aws", door.url, "sigv4", region=REGION)]) as client:
            assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
        assert door.refusals == []
        assert door.seen[0]["x-amz-security-token"] == "tok3n"


def test_the_verifier_rejects_what_does_not_match(routers: Routers) -> None:
    wrong = AwsKey(KEY.access_key, "not-the-secret")
    with function_url(routers.ok.url, KEY, REGION) as door:
        site = entry("aws", door.url, "sigv4", region=REGION)
        client = Client([site], signers=sigv4_with(wrong))
        with client, pytest.raises(RouterError) as raised:
            client.infer("demo", BODY)
        assert (raised.value.status, raised.value.message) == (403, "Forbidden")  # not failed over
        other = entry("aws", door.url, "sigv4", region="us-east-1")
        with Client([other], signers=sigv4_with(KEY)) as client:
            assert client.request("POST", "/v2/models/demo/infer", json=BODY).status_code == 403

        # A signed request whose body changes on the way, with and without its hash.
        with httpx.Client() as http:
            signed = next(
                SigV4Signer(REGION, credentials=lambda: static(KEY)).sync_auth_flow(
                    http.build_request("POST", f"{door.url}/v2/models/demo/infer", json=BODY)
                )
            )
            tensor = {"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [9.0] * 16}
            forged = {"inputs": [tensor]}
            request = http.build_request(
                "POST",
                signed.url,
                json=forged,
                headers={k: v for k, v in signed.headers.items() if k != "content-length"},
            )
            assert http.send(request).status_code == 403
            request.headers["x-amz-content-sha256"] = hashlib.sha256(request.content).hexdigest()
            assert http.send(request).status_code == 403
        assert door.refusals == [
            "signature mismatch",
            "wrong credential scope",
            "x-amz-content-sha256 is not the hash of the body",
            "signature mismatch",
        ]


def test_a_sigv4_entry_without_a_region_is_skipped(routers: Routers) -> None:
    sites = [entry("aws", routers.ok.url, "sigv4"), entry("b", routers.ok.url)]
    with Client(sites) as client:
        client.infer("demo", BODY)
        assert client.last is not None
        assert client.last.site == "b"
        assert "needs its region" in client.last.failed_over[0].why


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_google_id_tokens_pass_a_cloud_run_verifier_and_are_cached(routers: Routers) -> None:
    issuer = IdTokenIssuer()
    asked: list[str] = []
    clock = Clock()

    def token_source(audience: str) -> str:
        asked.append(audience)
        return issuer.issue(audience)

    def signer(e: RouterEntry, api_key: str | None) -> GoogleIdToken:
        return GoogleIdToken(base_url(e), token_source=token_source, api_key=api_key, clock=clock)

    with cloud_run(routers.ok.url, issuer) as door:
        site = entry("gcp", door.url + "/", "google-id-token")
        with Client([site], signers={"google-id-token": signer}) as client:
            for _ in range(3):
                assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
            assert asked == [door.url]  # audience: the router URL; one token for 3 calls
            token = door.seen[0]["authorization"].removeprefix("Bearer ")
            expiry = token_expiry(token)
            assert expiry is not None
            clock.now = expiry - 301
            client.infer("demo", BODY)
            assert len(asked) == 1
            clock.now = expiry - 299  # within 5 minutes of expiry: a new token
            client.infer("demo", BODY)
            assert len(asked) == 2
        assert door.refusals == []
        assert door.seen[-1]["authorization"] != door.seen[0]["authorization"]

        # A token for another audience is refused: 401, the answer, not failed over.
        def elsewhere(e: RouterEntry, api_key: str | None) -> GoogleIdToken:
            return GoogleIdToken("https://other.run.app", token_source=issuer.issue)

        with Client([site], signers={"google-id-token": elsewhere}) as client:
            with pytest.raises(RouterError) as raised:
                client.infer("demo", BODY)
            assert raised.value.status == 401
        assert door.refusals[-1].startswith("invalid ID token")


def test_google_id_token_and_api_key_together(routers: Routers) -> None:
    issuer = IdTokenIssuer()

    def signer(e: RouterEntry, api_key: str | None) -> GoogleIdToken:
        return GoogleIdToken(base_url(e), token_source=issuer.issue, api_key=api_key)

    with cloud_run(routers.keys.url, issuer) as door:
        site = entry("gcp", door.url, "google-id-token")
        signers = {"google-id-token": signer}
        with Client([site], signers=signers, api_key=routers.api_key) as client:
            assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
        seen = door.seen[-1]
        assert seen["authorization"] == f"Bearer {routers.api_key}"
        assert seen["x-serverless-authorization"].startswith("Bearer ey")
        with Client([site], signers=signers, api_key="") as client:
            with pytest.raises(RouterError) as raised:
                client.infer("demo", BODY)
            assert raised.value.status == 401  # the router: Cloud Run let it through
            assert raised.value.route_reason == "rejected: no API key"
        assert door.refusals == []


def test_signers_never_show_their_secrets() -> None:
    from mpfn.client import BearerKey

    assert "mpfn_" not in repr(BearerKey("mpfn_0123456789ab_secret"))
    assert "secret" not in repr(SigV4Signer(REGION, credentials=lambda: static(KEY)))
    assert token_expiry("not-a-jwt") is None


def test_a_google_site_without_credentials_is_skipped(
    routers: Routers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    sites = [entry("gcp", routers.ok.url, "google-id-token"), entry("b", routers.ok.url)]
    with Client(sites) as client:
        assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
        assert client.last is not None
        assert client.last.site == "b"
        why = client.last.failed_over[0].why
        assert why.startswith("cannot authenticate: cannot get a Google ID token")
