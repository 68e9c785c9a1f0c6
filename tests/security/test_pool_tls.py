"""Router -> pool over TLS with a private CA, a bearer token and client certificates
(mTLS): real worker processes serving HTTPS, a real router process holding the pool's
credentials by reference (`file:`). Broken credentials fail that pool with the reason in
`x-mpfn-route-reason` and the request fails over to a plain pool; a rotated token is
picked up without a restart; no secret reaches a log line or a response."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mpfn.poolauth.ca import CA, Issued
from mpfn.registry import Registry
from mpfn.routing import PoolStatsDocument
from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.warm import WarmSettings
from mpfn.warm.warmer import run_once
from tests.factories import pool
from tests.servers.mpfn_procs import publish_demo, start_router, start_tls_worker, start_worker
from tests.servers.process import Proc

TOKEN = "pool-token-7f3a9c1e5b"
NEW_TOKEN = "pool-token-rotated-2d8e4b"
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}]}


@dataclass
class Site:
    root: Path
    registry: Registry
    ca: CA
    client: Issued
    secure: Proc  # TLS, token, client certificate required
    expired: Proc  # TLS with an expired certificate
    plain: Proc  # the fallback: plain HTTP, no credential
    router: Proc
    worker_tokens: Path
    router_token: Path


def _tls_worker(store: LocalStore, root: Path, name: str, server: Issued, *extra: str) -> Proc:
    return start_tls_worker(store, root, name, server.cert, server.key, *extra)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("pooltls")
    store = LocalStore(root / "state")
    publish_demo(store, root)
    ca = CA(root / "pki")
    worker_tokens = root / "worker-tokens"
    worker_tokens.write_text(TOKEN + "\n")
    router_token = root / "router-token"
    router_token.write_text(TOKEN + "\n")
    required = ("--tls-client-ca", str(ca.pem), "--token-file", str(worker_tokens))
    secure = _tls_worker(store, root, "secure", ca.issue("server"), *required)
    expired = _tls_worker(store, root, "expired", ca.issue("old", expired=True))
    plain = start_worker(store, root / "logs", "plain")
    router = start_router(
        store, root / "logs", settings={"refresh_ttl_s": "0.2", "secret_ttl_s": "1"}
    )
    try:
        yield Site(root, Registry(store), ca, ca.issue("router", server=False), secure,
                   expired, plain, router, worker_tokens, router_token)  # fmt: skip
    finally:
        for proc in (router, plain, expired, secure):
            proc.stop()


def https(proc: Proc) -> str:
    return f"https://127.0.0.1:{proc.port}"


def tls(site: Site, *, ca: Path | None = None, client: bool = True) -> dict[str, str]:
    out = {"ca": f"file:{ca or site.ca.pem}"}
    if client:
        out |= {"cert": f"file:{site.client.cert}", "key": f"file:{site.client.key}"}
    return out


def bearer(path: Path) -> dict[str, str]:
    return {"type": "bearer", "token": f"file:{path}"}


def route(site: Site, *pools: object) -> httpx.Response:
    """Register `pools` (and the plain fallback, dearest) as the only pools; one request."""
    for old in site.registry.pools():
        site.registry.remove_pool(old.id)
    for p in pools:
        site.registry.put_pool(p)  # type: ignore[arg-type]
    site.registry.put_pool(pool("plain", site.plain.url, models=["demo"], cost=100.0))
    time.sleep(0.6)  # the router's snapshot refresh
    return httpx.post(f"{site.router.url}/v2/models/demo/infer", json=BODY, timeout=30)


def test_tls_with_a_token_and_a_client_certificate_serves(site: Site) -> None:
    answer = route(site, pool("ok", https(site.secure), models=["demo"],
                              auth=bearer(site.router_token), tls=tls(site)))  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-mpfn-pool"] == "ok"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong-ca", "tls: certificate verify failed"),
        ("expired", "certificate has expired"),
        ("no-client-cert", "secure-nocert: "),
        ("no-token", "HTTP 401: the pool refused the router's credentials"),
        ("wrong-token", "HTTP 401: the pool refused the router's credentials"),
        ("missing-secret", "credentials: file:"),
    ],
)
def test_broken_credentials_fail_that_pool_and_the_request_fails_over(
    site: Site, case: str, reason: str
) -> None:
    other = CA(site.root / "other-pki", "another CA")
    wrong = site.root / "wrong-token"
    wrong.write_text("not-the-token\n")
    doc = {
        "wrong-ca": pool("wrong-ca", https(site.secure), models=["demo"],
                         auth=bearer(site.router_token), tls=tls(site, ca=other.pem)),
        "expired": pool("expired", https(site.expired), models=["demo"], tls=tls(site)),
        "no-client-cert": pool("secure-nocert", https(site.secure), models=["demo"],
                               auth=bearer(site.router_token), tls=tls(site, client=False)),
        "no-token": pool("no-token", https(site.secure), models=["demo"], tls=tls(site)),
        "wrong-token": pool("wrong-token", https(site.secure), models=["demo"],
                            auth=bearer(wrong), tls=tls(site)),
        "missing-secret": pool("missing-secret", https(site.secure), models=["demo"],
                               auth=bearer(site.root / "nowhere"), tls=tls(site)),
    }[case]  # fmt: skip
    answer = route(site, doc)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-mpfn-pool"] == "plain"
    why = answer.headers["x-mpfn-route-reason"]
    assert f"attempt 2 after {doc.id} (" in why and reason in why, why


def test_a_rotated_token_is_picked_up_without_a_restart(site: Site) -> None:
    doc = pool("rotating", https(site.secure), models=["demo"],
               auth=bearer(site.router_token), tls=tls(site))  # fmt: skip
    assert route(site, doc).headers["x-mpfn-pool"] == "rotating"
    site.worker_tokens.write_text(f"{TOKEN}\n{NEW_TOKEN}\n")  # the pool accepts both
    site.router_token.write_text(NEW_TOKEN + "\n")  # the secret rotates
    time.sleep(1.2)  # the router's secret TTL (1 s)
    site.worker_tokens.write_text(NEW_TOKEN + "\n")  # the old one is retired
    time.sleep(1.2)  # the worker looks at its token file once a second
    answer = httpx.post(f"{site.router.url}/v2/models/demo/infer", json=BODY, timeout=30)
    assert answer.headers["x-mpfn-pool"] == "rotating", answer.headers["x-mpfn-route-reason"]


def test_the_warmer_manages_a_pool_through_its_credentials(site: Site) -> None:
    site.router_token.write_text(NEW_TOKEN + "\n")  # what the worker accepts by now
    ok = pool("ok", https(site.secure), models=["demo"], auth=bearer(site.router_token),
              tls=tls(site))  # fmt: skip
    lost = pool("lost", https(site.secure), models=["demo"],
                auth=bearer(site.root / "nowhere"), tls=tls(site))  # fmt: skip
    for old in site.registry.pools():
        site.registry.remove_pool(old.id)
    site.registry.put_pool(ok)
    site.registry.put_pool(lost)
    store = site.registry.store
    context = ssl.create_default_context(cafile=site.ca.pem)
    context.load_cert_chain(site.client.cert, site.client.key)
    with httpx.Client(verify=context) as client:
        unloaded = client.post(f"{https(site.secure)}/v2/repository/models/demo/unload",
                               headers={"Authorization": f"Bearer {NEW_TOKEN}"})  # fmt: skip
        assert unloaded.status_code == 200, unloaded.text
    plan = run_once(store, settings=WarmSettings(pinned=["demo"], use_prophet=False))
    done = {(a.action, a.pool) for a in plan.actions if a.status == "done"}
    assert ("load", "ok") in done
    assert any(e.startswith("pool lost: credentials: file:") for e in plan.errors), plan.errors
    # the run refreshed stats/ too, probing the pool through its TLS and token
    stats = Documents(store).get("stats/ok.json", PoolStatsDocument)
    assert stats.error_rate == 0.0 and "demo/1" in (stats.loaded or []), stats
    assert any(e.startswith("stats of pool lost: credentials:") for e in plan.errors)


def test_no_secret_in_any_log_or_answer(site: Site) -> None:
    # runs last: every log of the module is complete
    secrets = [TOKEN, NEW_TOKEN, "not-the-token"]
    secrets += [p.read_text().splitlines()[1] for p in site.root.glob("pki/*-key.pem")]
    answers = [
        httpx.get(f"{site.router.url}/v2/models/demo", timeout=10).text,
        httpx.post(f"{site.router.url}/v2/models/nope/infer", json=BODY, timeout=10).text,
    ]
    logs = [p.read_text(errors="replace") for p in (site.root / "logs").glob("*.log")]
    assert logs
    for text in [*logs, *answers]:
        for secret in secrets:
            assert secret not in text
