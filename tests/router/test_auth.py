"""API keys in the router (`auth=keys`): missing, malformed, unknown, revoked and
out-of-scope keys get 401/403 JSON, per-key rate limits 429 with Retry-After; health stays
open; keys come from the store with the state snapshot; secrets are never logged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from mpfn.auth import ApiKey, issue_key
from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion
from mpfn.functions.router.asgi import RouterApp, create_app
from mpfn.functions.router.settings import RouterSettings
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.router.backend import Backend
from tests.router.conftest import error_text, make_pool, seed, settings
from tests.servers.mpfn_procs import start_router

BODY = b'{"inputs":[{"name":"x","shape":[1,16],"datatype":"FP32","data":[0]}]}'


@dataclass
class Keys:
    full: str
    demo_only: str
    other_only: str
    pool_b: str
    nowhere: str
    limited: str
    docs: dict[str, ApiKey]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keys(store: LocalStore, backends: tuple[Backend, Backend]) -> Keys:
    a, b = backends
    seed(
        store,
        models=[demo_model_version(), ModelVersion(name="llm", version="1", format="gguf")],
        pools=[
            make_pool("pa", a.url),
            make_pool("pb", b.url),
            make_pool("chat", a.url, adapter="openai"),
        ],
    )
    docs = Documents(store)
    made: dict[str, tuple[str, ApiKey]] = {
        "full": issue_key("full"),
        "demo_only": issue_key("demo-only", models=["demo"]),
        "other_only": issue_key("other-only", models=["other"]),
        "pool_b": issue_key("pool-b", pools=["pb"]),
        "nowhere": issue_key("nowhere", pools=["gone"]),
        "limited": issue_key("limited", rate_per_s=0.001, burst=2),
    }
    for _, doc in made.values():
        docs.upsert(doc.key, doc)
    return Keys(
        **{name: plaintext for name, (plaintext, _) in made.items()},
        docs={name: doc for name, (_, doc) in made.items()},
    )


@pytest.fixture
async def app(store: LocalStore) -> AsyncIterator[RouterApp]:
    router = create_app(store, settings=settings(auth="keys", max_body_bytes=4096))
    yield router
    await router.runtime.stop()


async def test_health_and_server_metadata_stay_open(keys: Keys, client: httpx.AsyncClient) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2", "/openapi.json", "/metrics"):
        assert (await client.get(path)).status_code == 200, path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/models/demo/infer"),
        ("POST", "/v2/models/demo/versions/1/infer"),
        ("POST", "/v2/models/no-such-model/infer"),
        ("GET", "/v2/models/demo"),
        ("GET", "/v2/models/demo/versions/1"),
        ("GET", "/v2/models/demo/ready"),
        ("GET", "/v2/models/no-such-model"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/llm"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
    ],
)
async def test_missing_key_is_401_json_everywhere_but_health(
    method: str,
    path: str,
    keys: Keys,
    client: httpx.AsyncClient,
    backends: tuple[Backend, Backend],
) -> None:
    r = await client.request(method, path, content=BODY if method == "POST" else None)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "API key" in error_text(r)
    if path.startswith("/v1/"):  # OpenAI's error shape
        assert r.json()["error"]["type"] == "authentication_error"
    assert not backends[0].seen and not backends[1].seen


async def test_valid_key_is_served_and_never_forwarded(
    keys: Keys, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    r = await client.post("/v2/models/demo/infer", content=BODY, headers=bearer(keys.full))
    assert r.status_code == 200, r.text
    assert (await client.get("/v2/models/demo", headers=bearer(keys.full))).status_code == 200
    seen = [s for b in backends for s in b.seen]
    assert len(seen) == 1
    sent = {k.lower(): v for k, v in seen[0]["headers"].items()}
    assert "authorization" not in sent
    assert keys.full not in repr(seen[0])


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer not-a-key",
        "Basic dXNlcjpwYXNz",
        "Bearer mpfn_000000000000_" + "A" * 43,  # unknown id
        "Bearer mpfn_zzzz_short",
    ],
)
async def test_malformed_or_unknown_keys_are_401(
    header: str, keys: Keys, client: httpx.AsyncClient
) -> None:
    r = await client.post("/v2/models/demo/infer", content=BODY, headers={"Authorization": header})
    assert r.status_code == 401 and "error" in r.json()
    token = header.partition(" ")[2]
    assert not token or token not in r.text


async def test_wrong_secret_for_a_real_id_is_401(keys: Keys, client: httpx.AsyncClient) -> None:
    prefix, secret = keys.full[:-43], keys.full[-43:]
    forged = prefix + ("A" if secret[0] != "A" else "B") + secret[1:]
    r = await client.post("/v2/models/demo/infer", content=BODY, headers=bearer(forged))
    assert r.status_code == 401 and r.json() == {"error": "invalid API key"}


async def test_model_scope_is_403(keys: Keys, client: httpx.AsyncClient) -> None:
    h = bearer(keys.other_only)
    r = await client.post("/v2/models/demo/infer", content=BODY, headers=h)
    assert r.status_code == 403 and "not allowed to use model 'demo'" in r.json()["error"]
    assert (await client.get("/v2/models/demo", headers=h)).status_code == 403
    assert (await client.get("/v2/models/demo/ready", headers=h)).status_code == 403
    r = await client.post("/v1/embeddings", json={"model": "llm", "input": "x"}, headers=h)
    assert r.status_code == 403
    ok = bearer(keys.demo_only)
    assert (await client.post("/v2/models/demo/infer", content=BODY, headers=ok)).status_code == 200
    r = await client.post("/v1/embeddings", json={"model": "llm", "input": "x"}, headers=ok)
    assert r.status_code == 403


async def test_openai_model_list_shows_only_the_keys_models(
    keys: Keys, client: httpx.AsyncClient
) -> None:
    listed = await client.get("/v1/models", headers=bearer(keys.full))
    assert [m["id"] for m in listed.json()["data"]] == ["llm"]
    listed = await client.get("/v1/models", headers=bearer(keys.demo_only))
    assert listed.json()["data"] == []


async def test_pool_scope_keeps_requests_on_the_keys_pools(
    keys: Keys, client: httpx.AsyncClient, backends: tuple[Backend, Backend]
) -> None:
    for _ in range(6):
        r = await client.post("/v2/models/demo/infer", content=BODY, headers=bearer(keys.pool_b))
        assert r.status_code == 200 and r.headers["x-mpfn-pool"] == "pb"
    assert not backends[0].seen and len(backends[1].seen) == 6
    r = await client.post("/v2/models/demo/infer", content=BODY, headers=bearer(keys.nowhere))
    assert r.status_code == 403 and "pool" in r.json()["error"]


async def test_revoked_and_deleted_keys_stop_at_the_next_refresh(
    store: LocalStore, keys: Keys, app: RouterApp, client: httpx.AsyncClient
) -> None:
    h = bearer(keys.full)
    assert (await client.post("/v2/models/demo/infer", content=BODY, headers=h)).status_code == 200
    docs = Documents(store)
    revoked = keys.docs["full"].model_copy(update={"revoked_at": datetime.now(UTC)})
    docs.upsert(revoked.key, revoked)
    await app.runtime.refresh()
    r = await client.post("/v2/models/demo/infer", content=BODY, headers=h)
    assert r.status_code == 401 and r.json() == {"error": "API key revoked"}
    store.delete(keys.docs["demo_only"].key)
    await app.runtime.refresh()
    r = await client.post("/v2/models/demo/infer", content=BODY, headers=bearer(keys.demo_only))
    assert r.status_code == 401 and r.json() == {"error": "invalid API key"}


async def test_rate_limit_is_429_with_retry_after_per_key(
    keys: Keys, client: httpx.AsyncClient
) -> None:
    h = bearer(keys.limited)
    for _ in range(2):  # the burst
        assert (
            await client.post("/v2/models/demo/infer", content=BODY, headers=h)
        ).status_code == 200
    r = await client.post("/v2/models/demo/infer", content=BODY, headers=h)
    assert r.status_code == 429 and "rate limit" in r.json()["error"]
    assert int(r.headers["retry-after"]) >= 1
    assert (await client.get("/v2/models/demo", headers=h)).status_code == 429
    other = bearer(keys.full)
    assert (
        await client.post("/v2/models/demo/infer", content=BODY, headers=other)
    ).status_code == 200


def test_auth_setting_is_validated() -> None:
    assert RouterSettings.from_env({}).auth == "none"
    assert RouterSettings.from_env({"MPFN_ROUTER_AUTH": "keys"}).needs_keys
    with pytest.raises(ValueError, match="auth must be one of none, keys"):
        RouterSettings.from_env({"MPFN_ROUTER_AUTH": "iam"})


async def test_without_auth_no_key_is_needed(store: LocalStore, keys: Keys) -> None:
    router = create_app(store, settings=settings())
    try:
        transport = httpx.ASGITransport(app=router)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
            assert (await c.post("/v2/models/demo/infer", content=BODY)).status_code == 200
            assert (await c.get("/v1/models")).json()["data"][0]["id"] == "llm"
    finally:
        await router.runtime.stop()


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"level": "DEBUG", "handlers": ["out"]},
    "loggers": {"uvicorn.access": {"level": "INFO"}},
}


def test_key_secrets_never_reach_the_router_log(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "state")
    seed(store, models=[demo_model_version()])
    docs = Documents(store)
    plaintext, doc = issue_key("logged", models=["demo"], rate_per_s=0.001, burst=2)
    docs.upsert(doc.key, doc)
    revoked_text, revoked = issue_key("revoked")
    docs.upsert(revoked.key, revoked.model_copy(update={"revoked_at": datetime.now(UTC)}))
    config = tmp_path / "log.json"
    config.write_text(json.dumps(LOG_CONFIG))
    router = start_router(
        store,
        tmp_path / "logs",
        "router-debug",
        settings={"auth": "keys"},
        log_config=config,
    )
    presented = [plaintext, revoked_text, "mpfn_" + "f" * 12 + "_" + "s" * 43, "not-a-key"]
    statuses = set()
    try:
        for key in presented:
            for path in ("/v2/models/demo/infer", "/v2/models/nope/infer", "/v1/embeddings"):
                r = httpx.post(f"{router.url}{path}", content=BODY, headers=bearer(key), timeout=10)
                statuses.add(r.status_code)
                assert key not in r.text
            r = httpx.get(f"{router.url}/v2/models/demo", headers=bearer(key), timeout=10)
            statuses.add(r.status_code)
    finally:
        router.stop()
    assert {401, 403, 429, 503} <= statuses  # refused for every reason, and routed (no pool)
    log = router.log_path.read_text(errors="replace")
    assert "POST /v2/models/demo/infer" in log  # the log was written at debug level
    for key in presented:
        assert key not in log and key[-20:] not in log
