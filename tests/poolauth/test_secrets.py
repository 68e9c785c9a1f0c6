"""Secret references and their resolution: parsing, the TTL cache (rotation, a refresh
that fails), and each source against a real server or a stand-in — AWS Secrets Manager
on the session's moto server; GCP Secret Manager, the GCE metadata server and the
Kubernetes API as in-process stand-ins (NOT those services) following their REST shapes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mpfn.documents import Pool
from mpfn.poolauth.present import CredentialError, PoolCredentials
from mpfn.poolauth.refs import BadReference, parse_ref
from mpfn.poolauth.resolver import SecretResolver
from mpfn.poolauth.sources import SecretUnavailable, Sources
from tests.servers.process import Proc


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "text",
    [
        "env:POOL_TOKEN",
        "file:/run/secrets/t",
        "aws-sm:mpfn/pool#token",
        "gcp-sm:projects/p/secrets/s",
        "gcp-sm:projects/p/secrets/s/versions/3#k",
        "k8s:mpfn/pool-token/token",
    ],
)
def test_references_parse_and_print_back(text: str) -> None:
    assert str(parse_ref(text)) == text


@pytest.mark.parametrize(
    "text", ["sk-live-abc123", "env:", "file:relative", "gcp-sm:my-secret", "k8s:a/b", ""]
)
def test_what_is_not_a_reference_is_refused_without_being_repeated(text: str) -> None:
    with pytest.raises(BadReference) as caught:
        parse_ref(text)
    scheme, sep, rest = text.partition(":")
    shown = rest if sep else scheme  # what could be a secret
    assert not shown or shown not in str(caught.value)


async def test_values_are_cached_for_the_ttl_then_fetched_again(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("one")
    clock = Clock()
    resolver = SecretResolver(ttl_s=10, stale_s=60, clock=clock)
    ref = parse_ref(f"file:{secret}")
    assert await resolver.get(ref) == b"one"
    secret.write_text("two")
    clock.now += 5
    assert await resolver.get(ref) == b"one"  # within the TTL
    clock.now += 6
    assert await resolver.get(ref) == b"two"  # rotated
    secret.unlink()
    clock.now += 11
    assert await resolver.get(ref) == b"two"  # the store is down: the last value stays
    clock.now += 61
    with pytest.raises(SecretUnavailable, match=f"file:{secret}: No such file"):
        await resolver.get(ref)


async def test_environment_and_json_fields() -> None:
    sources = Sources(environ={"T": "abc"})
    assert await sources.fetch(parse_ref("env:T")) == b"abc"
    with pytest.raises(SecretUnavailable, match="env:MISSING: not set"):
        await sources.fetch(parse_ref("env:MISSING"))


async def test_aws_secrets_manager(moto_server: Proc) -> None:
    def client() -> object:
        return boto3.client(
            "secretsmanager",
            endpoint_url=moto_server.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    sm = client()
    sm.create_secret(Name="mpfn/pool-a", SecretString=json.dumps({"token": "tok-a"}))  # type: ignore[attr-defined]
    sources = Sources(aws_client=client)
    assert await sources.fetch(parse_ref("aws-sm:mpfn/pool-a#token")) == b"tok-a"
    with pytest.raises(SecretUnavailable, match="aws-sm:mpfn/nope: ResourceNotFoundException"):
        await sources.fetch(parse_ref("aws-sm:mpfn/nope"))


def _google_standin() -> Starlette:
    """Secret Manager's `:access` and the metadata server's token and identity."""

    async def token(request: Request) -> Response:
        if request.headers.get("metadata-flavor") != "Google":
            return PlainTextResponse("missing header", 403)
        return JSONResponse({"access_token": "ya29.standin", "expires_in": 3599})

    async def identity(request: Request) -> Response:
        return PlainTextResponse(f"id-token-for:{request.query_params['audience']}")

    async def access(request: Request) -> Response:
        if request.headers.get("authorization") != "Bearer ya29.standin":
            return JSONResponse({"error": "unauthenticated"}, 401)
        name = request.path_params["name"]
        if name != "projects/p/secrets/pool/versions/latest:access":
            return JSONResponse({"error": "not found"}, 404)
        data = base64.b64encode(b"gcp-token").decode()
        return JSONResponse({"name": name, "payload": {"data": data}})

    base = "/computeMetadata/v1/instance/service-accounts/default"
    return Starlette(routes=[Route(f"{base}/token", token), Route(f"{base}/identity", identity),
                             Route("/v1/{name:path}", access)])  # fmt: skip


async def test_gcp_secret_manager_and_id_tokens_standin() -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=_google_standin()))
    env = {"GCE_METADATA_HOST": "http://meta", "MPFN_GCP_SECRET_MANAGER_URL": "http://sm"}
    sources = Sources(environ=env, http=http)
    assert await sources.fetch(parse_ref("gcp-sm:projects/p/secrets/pool")) == b"gcp-token"
    with pytest.raises(SecretUnavailable, match="HTTP 404"):
        await sources.fetch(parse_ref("gcp-sm:projects/p/secrets/other"))
    credentials = PoolCredentials(SecretResolver(sources))
    pool = Pool.model_validate({"id": "run", "cloud": "gcp", "endpoint": "https://svc.run.app/x",
                                "auth": {"type": "google-id-token"}})  # fmt: skip
    keys = await credentials.keys(pool)
    assert keys.headers["Authorization"] == "Bearer id-token-for:https://svc.run.app"
    await credentials.aclose()


async def test_kubernetes_secret_standin(tmp_path: Path) -> None:
    async def secret(request: Request) -> Response:
        if request.headers.get("authorization") != "Bearer sa-token":
            return JSONResponse({"kind": "Status", "code": 401}, 401)
        if request.path_params["name"] != "pool-token":
            return JSONResponse({"kind": "Status", "code": 404}, 404)
        data = {"token": base64.b64encode(b"k8s-token").decode()}
        return JSONResponse({"kind": "Secret", "data": data})

    app = Starlette(routes=[Route("/api/v1/namespaces/{ns}/secrets/{name}", secret)])
    sa = tmp_path / "token"
    sa.write_text("sa-token\n")
    env = {"MPFN_K8S_API_URL": "http://k8s", "MPFN_K8S_TOKEN_FILE": str(sa)}
    sources = Sources(environ=env, http=httpx.AsyncClient(transport=httpx.ASGITransport(app)))
    assert await sources.fetch(parse_ref("k8s:mpfn/pool-token/token")) == b"k8s-token"
    with pytest.raises(SecretUnavailable, match="HTTP 404"):
        await sources.fetch(parse_ref("k8s:mpfn/other/token"))
    with pytest.raises(SecretUnavailable, match="has no key"):
        await sources.fetch(parse_ref("k8s:mpfn/pool-token/nokey"))
    await sources.aclose()


async def test_credentials_of_each_kind_and_failures_name_the_reference() -> None:
    sources = Sources(environ={"TOK": "s3cret"})
    credentials = PoolCredentials(SecretResolver(sources))

    def doc(auth: dict[str, str]) -> Pool:
        return Pool.model_validate(
            {"id": "p", "cloud": "local", "endpoint": "http://10.0.0.5:8000", "auth": auth}
        )

    bearer = await credentials.keys(doc({"type": "bearer", "token": "env:TOK"}))
    assert bearer.headers == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in repr(bearer)
    header = await credentials.keys(doc({"type": "header", "header": "x-api-key",
                                         "token": "env:TOK"}))  # fmt: skip
    assert header.headers == {"x-api-key": "s3cret"}
    with pytest.raises(CredentialError, match="credentials: env:NOPE: not set"):
        await credentials.keys(
            Pool.model_validate(
                {
                    "id": "q",
                    "cloud": "local",
                    "endpoint": "http://h:1",
                    "auth": {"type": "bearer", "token": "env:NOPE"},
                }
            )
        )


async def test_pool_keys_last_no_longer_than_the_secrets_they_were_made_of(
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text("old")
    clock = Clock()
    credentials = PoolCredentials(SecretResolver(ttl_s=10, clock=clock))

    def doc(pool_id: str) -> Pool:
        auth = {"type": "bearer", "token": f"file:{token}"}
        return Pool.model_validate(
            {"id": pool_id, "cloud": "local", "endpoint": "http://h:1", "auth": auth}
        )

    await credentials.keys(doc("a"))  # fetches the token at t=1000
    clock.now += 9
    assert (await credentials.keys(doc("b"))).headers["Authorization"] == "Bearer old"
    token.write_text("new")
    clock.now += 2  # past the token's TTL, though b's keys were made only 2 s ago
    assert (await credentials.keys(doc("b"))).headers["Authorization"] == "Bearer new"
