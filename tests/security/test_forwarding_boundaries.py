"""The router only ever sends requests to registered pools, never follows a redirect, and
bounds what it accepts.

An unregistered recording backend (`trap`) listens on loopback; requests try to steer the
router to it through the model name, the version, `Host` and forwarding headers, the
pool pin, an absolute-form request target and OpenAI bodies, and a registered backend
answers with redirects pointing at it. The trap must never see a request, and the
registered backend only ever the infer paths of the models it serves. Bodies over the
router's limit get 413, and so does a small compressed body that expands past the limits.
"""

from __future__ import annotations

import gzip
import http.client
from collections.abc import Iterator

import httpx
import pytest

from tests.reliability.stack import DEMO_BODY
from tests.security.conftest import MAX_BODY, REDIRECTS, Edge

ECHO = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}


def trap_host(edge: Edge) -> str:
    return edge.trap.url.removeprefix("http://")


def assert_only_registered_infer_paths(edge: Edge) -> None:
    assert edge.trap.seen() == [], edge.trap.seen()
    allowed_models = {"echo", *(f"redirect-{n}" for n in REDIRECTS)}
    for entry in edge.rec.seen():
        parts = entry["path"].split("/")
        assert entry["method"] == "POST" and parts[-1] == "infer", entry
        assert parts[3] in allowed_models, entry
        assert entry["raw_path"] == entry["path"], entry


def model_paths(host: str) -> list[str]:
    return [
        f"/v2/models/{host}/infer",
        f"/v2/models/http:%2F%2F{host}%2F/infer",
        f"/v2/models/http:%2F%2F{host}%2Fv2%2Fmodels%2Fecho/infer",
        f"/v2/models/echo@{host}/infer",
        f"/v2/models/@{host}/infer",
        f"/v2/models/echo%40{host}/infer",
        f"/v2/models/%2F%2F{host}/infer",
        f"/v2/models/echo/versions/1@{host}/infer",
        f"/v2/models/echo/versions/{host}/infer",
        f"/v2/models/echo:@{host}/versions/1/infer",
        f"/v2/models/echo%0d%0aHost:%20{host}/infer",
    ]


def test_model_names_and_versions_cannot_name_a_host(edge: Edge) -> None:
    with httpx.Client(base_url=edge.router.url) as client:
        for path in model_paths(trap_host(edge)):
            reply = client.post(path, json=ECHO)
            assert reply.status_code == 404, (path, reply.text)
            assert reply.headers.get("x-mpfn-pool", "none") == "none"
    assert_only_registered_infer_paths(edge)


@pytest.mark.parametrize(
    "header",
    [
        "host",
        "x-forwarded-host",
        "x-forwarded-for",
        "x-original-url",
        "x-rewrite-url",
        "forwarded",
        "x-mpfn-pool",
        "x-mpfn-region",
    ],
)
def test_request_headers_cannot_redirect_the_router(edge: Edge, header: str) -> None:
    host = trap_host(edge)
    values = [host, f"http://{host}/", f"for=1;host={host}", "/v2/repository/index", "trap"]
    with httpx.Client(base_url=edge.router.url) as client:
        for value in values:
            reply = client.post("/v2/models/echo/infer", json=ECHO, headers={header: value})
            # Served by the registered pool, or refused: a malformed or unknown pin or
            # region (400), or a region no pool is in (503).
            assert reply.status_code in (200, 400, 503), (header, value, reply.text)
            if reply.status_code == 200:
                assert reply.headers["x-mpfn-pool"] == "rec"
    assert_only_registered_infer_paths(edge)


def test_absolute_form_request_target_goes_nowhere_else(edge: Edge) -> None:
    host, port = edge.router.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        body = b'{"inputs": []}'
        target = f"http://{trap_host(edge)}/v2/models/echo/infer"
        conn.putrequest("POST", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", trap_host(edge))
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        reply = conn.getresponse()
        reply.read()
        assert reply.status in (200, 400, 404), reply.status
        if reply.status == 200:
            assert reply.getheader("x-mpfn-pool") == "rec"
    finally:
        conn.close()
    assert_only_registered_infer_paths(edge)


def test_openai_model_cannot_name_a_host(edge: Edge) -> None:
    host = trap_host(edge)
    for model in (f"http://{host}/v1", host, f"//{host}", f"echo@{host}"):
        for route in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            reply = httpx.post(f"{edge.router.url}{route}", json={"model": model, "input": "x"})
            assert reply.status_code == 404, reply.text
    assert_only_registered_infer_paths(edge)


@pytest.mark.parametrize("status", REDIRECTS)
def test_backend_redirects_are_relayed_never_followed(edge: Edge, status: int) -> None:
    before = len(edge.rec.seen())
    reply = httpx.post(f"{edge.router.url}/v2/models/redirect-{status}/infer", json=ECHO)
    assert reply.status_code == status
    assert reply.headers["x-mpfn-pool"] == "rec"
    assert len(edge.rec.seen()) == before + 1  # one attempt: a redirect is not a failure
    assert_only_registered_infer_paths(edge)


def test_body_over_the_router_limit_is_413(edge: Edge) -> None:
    big = b"{" + b" " * MAX_BODY + b"}"
    with httpx.Client(base_url=edge.router.url) as client:
        announced = client.post("/v2/models/demo/infer", content=big)

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
            for i in range(0, len(big), 16384):
                yield big[i : i + 16384]

        streamed = client.post("/v2/models/demo/infer", content=chunks())
        openai = client.post("/v1/chat/completions", content=big)
        at_limit = client.post("/v2/models/demo/infer", content=b" " * (MAX_BODY - 2) + b"{}")
    for reply in (announced, streamed, openai):
        assert reply.status_code == 413, reply.text
        assert "limit" in str(reply.json()["error"])  # OpenAI routes: {"error": {"message"}}
        assert reply.headers["x-mpfn-pool"] == "none"
    assert at_limit.status_code == 400  # within the limit: forwarded, and the worker says why
    assert at_limit.headers["x-mpfn-pool"] == "w1"


def test_compressed_body_expanding_past_the_limits_is_413(edge: Edge) -> None:
    """A decompression bomb: small on the wire, megabytes once inflated. Whichever side
    inflates it first (router or worker) stops at its limit."""
    bomb = gzip.compress(b"[" + b"0," * (4 * 1024 * 1024) + b"0]", compresslevel=9)
    assert len(bomb) < MAX_BODY
    reply = httpx.post(
        f"{edge.router.url}/v2/models/demo/infer",
        content=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert reply.status_code == 413 and "limit" in reply.json()["error"], reply.text
    direct = httpx.post(
        f"{edge.worker.url}/v2/models/demo/infer",
        content=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert direct.status_code == 413 and "after decompression" in direct.json()["error"]
    ok = httpx.post(f"{edge.router.url}/v2/models/demo/infer", json=DEMO_BODY)
    assert ok.status_code == 200
