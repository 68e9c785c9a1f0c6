"""The workers' management API (`/v2/repository/...`) cannot be reached through the router.

Requests are sent byte-exact (no client-side path normalisation): every repository route
and method, dot-segment traversal from the model routes, percent-encoded slashes and dots,
doubled slashes, case changes, query and fragment tricks, and OpenAI bodies naming a path
as the model. The worker behind the router keeps its management API open, so a request
that got through would unload the demo model; the recording backends log every request
they receive, so anything forwarded anywhere but an infer path would show.
"""

from __future__ import annotations

import http.client
import json

import httpx
import pytest

from tests.security.conftest import Edge

UNLOAD = "repository/models/demo/unload"
VARIANTS: list[tuple[str, str]] = [
    ("POST", "/v2/repository/index"),
    ("GET", "/v2/repository/index"),
    ("POST", "/v2/repository/models/demo/load"),
    ("POST", f"/v2/{UNLOAD}"),
    ("GET", f"/v2/{UNLOAD}"),
    ("PUT", f"/v2/{UNLOAD}"),
    ("DELETE", "/v2/repository/models/demo"),
    ("POST", "/v2/repository/models/demo/versions/1/unload"),
    ("POST", f"//v2/{UNLOAD}"),
    ("POST", f"/v2//{UNLOAD}"),
    ("POST", f"/v2/./{UNLOAD}"),
    ("POST", "/V2/REPOSITORY/INDEX"),
    ("POST", "/v2/repository%2findex"),
    ("POST", "/v2%2frepository%2fmodels%2fdemo%2funload"),
    ("POST", "/v2/models/../repository/index"),
    ("POST", f"/v2/models/demo/../../{UNLOAD}"),
    ("POST", f"/v2/models/demo/infer/../../../{UNLOAD}"),
    ("POST", f"/v2/models/demo/versions/1/infer/../../../../../{UNLOAD}"),
    ("POST", "/v2/models/%2e%2e/repository/index"),
    ("POST", f"/v2/models/demo/%2e%2e/%2e%2e/{UNLOAD}"),
    ("POST", "/v2/models/..%2f..%2frepository%2fmodels%2fdemo%2funload/infer"),
    ("POST", "/v2/models/demo%2f..%2f..%2frepository%2fmodels%2fdemo%2funload/infer"),
    ("POST", "/v2/models/demo/versions/..%2f..%2f..%2frepository%2findex/infer"),
    ("POST", "/v2/models/..%252f..%252frepository%252findex/infer"),
    ("POST", f"/v2/models/demo/infer;/../../../{UNLOAD}"),
    ("POST", f"/v2/models/demo/infer%3f/../../../{UNLOAD}"),
    ("POST", f"/v2/models/demo/infer%23/../../../{UNLOAD}"),
    ("POST", f"/v2/{UNLOAD}?/v2/models/demo/infer"),
    ("POST", f"/v2/{UNLOAD}#/v2/models/demo/infer"),
    ("POST", f"/v1/../v2/{UNLOAD}"),
    ("POST", f"/v1/chat/completions/../../v2/{UNLOAD}"),
    ("POST", "/metrics/../v2/repository/index"),
    ("POST", f"/docs/../v2/{UNLOAD}"),
]


def raw_request(url: str, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send `target` exactly as given (http.client does not normalise paths)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def assert_demo_still_loaded(edge: Edge) -> None:
    assert httpx.get(f"{edge.worker.url}/v2/models/demo/ready").status_code == 200
    rows = httpx.post(f"{edge.worker.url}/v2/repository/index", json={"ready": True}).json()
    assert [r["name"] for r in rows] == ["demo"]


def assert_no_management_request_forwarded(edge: Edge) -> None:
    assert edge.trap.seen() == []
    for entry in edge.rec.seen():
        assert entry["path"].endswith("/infer") and "repository" not in entry["raw_path"], entry


@pytest.mark.parametrize(("method", "target"), VARIANTS)
def test_management_route_variant_is_not_forwarded(edge: Edge, method: str, target: str) -> None:
    status, body = raw_request(edge.router.url, method, target, b'{"parameters": {}}')
    assert status == 404, (status, body[:300])
    assert set(json.loads(body)) == {"error"}
    assert_demo_still_loaded(edge)
    assert_no_management_request_forwarded(edge)


@pytest.mark.parametrize(
    "model",
    [
        "../v2/repository/models/demo/unload",
        "/v2/repository/index",
        "demo/../../repository/index",
        "demo#/../../repository/index",
        "demo?x=/../repository/index",
    ],
)
def test_openai_model_naming_a_path_is_not_forwarded(edge: Edge, model: str) -> None:
    for route in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        reply = httpx.post(f"{edge.router.url}{route}", json={"model": model, "input": "x"})
        assert reply.status_code == 404, reply.text
    assert_demo_still_loaded(edge)
    assert_no_management_request_forwarded(edge)


def test_the_same_requests_do_reach_an_open_worker_directly(edge: Edge) -> None:
    """Control: the management API works when called directly, so the checks above would
    notice a forwarded request (the model is loaded again afterwards)."""
    url = edge.worker.url
    assert httpx.post(f"{url}/v2/{UNLOAD}").status_code == 200
    assert httpx.get(f"{url}/v2/models/demo/ready").status_code != 200
    assert httpx.post(f"{url}/v2/repository/models/demo/load").status_code == 200
    assert_demo_still_loaded(edge)
