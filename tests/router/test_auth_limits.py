"""Request limits and where requests may go: body size and tensor element limits (413/400
JSON, checked from the v2 header without decoding tensors), no forwarding to anything
but a registered pool endpoint, and no redirect ever followed."""

from __future__ import annotations

import gzip
import json
import socket
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from mpfn.demo import demo_model_version
from mpfn.functions.router.asgi import RouterApp, create_app
from mpfn.functions.router.limits import SMALL_BODY, count_elements
from mpfn.store import LocalStore
from tests.router.backend import Backend, serve
from tests.router.conftest import make_pool, seed, settings
from tests.servers.mpfn_procs import start_router

LIMIT = 1000


def v2(shape: list[int], **extra: object) -> bytes:
    tensor = {"name": "x", "shape": shape, "datatype": "FP32", "data": [0], **extra}
    return json.dumps({"inputs": [tensor]}).encode()


@pytest.fixture
async def app(store: LocalStore) -> AsyncIterator[RouterApp]:
    router = create_app(store, settings=settings(max_body_bytes=8192, max_elements=LIMIT))
    yield router
    await router.runtime.stop()


@pytest.fixture
async def backend(store: LocalStore) -> AsyncIterator[Backend]:
    async with serve(Backend("a")) as a:
        seed(store, models=[demo_model_version()], pools=[make_pool("pa", a.url)])
        yield a


CASES = [
    (v2([2, 3]), 6),
    (v2([]), 1),  # a scalar
    (v2([7, 0, 10**30]), 0),
    (b'{"inputs":[{"shape" : [ 2 , 5 ]},{"name":"shape","shape":[3]}]}', 13),
    (b'{"inputs":[{"name":"\\"shape\\": [99999]","shape":[4]}]}', 4),
    (v2([10**40]), LIMIT + 1),
    (b'{"inputs":[{"name":"x","\\u0073hape":[500]}]}', 500),  # the key, escaped
]


@pytest.mark.parametrize(("body", "elements"), CASES)
def test_element_count_parsed_and_scanned_agree(body: bytes, elements: int) -> None:
    assert count_elements(body, None, LIMIT) == elements  # parsed (a small body)
    padded = body[:-1] + b',"parameters":{"pad":"' + b"x" * SMALL_BODY + b'"}}'
    assert count_elements(padded, None, LIMIT) == elements  # scanned (a large body)


async def test_within_the_limit_is_forwarded_unchanged(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    body = v2([10, 100])
    r = await client.post("/v2/models/demo/infer", content=body)
    assert r.status_code == 200 and backend.seen[-1]["body"] == body


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (v2([1, 1001]), {}),
        (v2([10**25, 10**25]), {}),
        (b'{"inputs":[{"name":"x","\\u0073hape":[5000],"datatype":"FP32","data":[0]}]}', {}),
        (v2([600]).replace(b"]}]}", b']},{"name":"y","shape":[600]}]}'), {}),
        (gzip.compress(v2([4000])), {"Content-Encoding": "gzip"}),
        (zlib.compress(v2([4000])), {"Content-Encoding": "deflate"}),
    ],
)
async def test_too_many_elements_is_413(
    body: bytes, headers: dict[str, str], client: httpx.AsyncClient, backend: Backend
) -> None:
    r = await client.post("/v2/models/demo/infer", content=body, headers=headers)
    assert r.status_code == 413, r.text
    assert r.json()["error"] == f"request declares more than {LIMIT} tensor elements"
    assert r.headers["x-mpfn-pool"] == "none" and not backend.seen


async def test_binary_tensor_header_is_checked_without_the_tensor_bytes(
    client: httpx.AsyncClient, backend: Backend
) -> None:
    header = b'{"inputs":[{"name":"x","shape":[1,2000],"datatype":"FP32",' + (
        b'"parameters":{"binary_data_size":64}}]}'
    )
    big = header + bytes(64)
    h = {"Inference-Header-Content-Length": str(len(header))}
    r = await client.post("/v2/models/demo/infer", content=big, headers=h)
    assert r.status_code == 413 and not backend.seen
    small = header.replace(b"[1,2000]", b"[1,16]") + bytes(64)
    h = {"Inference-Header-Content-Length": str(len(header) - 2)}
    r = await client.post("/v2/models/demo/infer", content=small, headers=h)
    assert r.status_code == 200 and backend.seen[-1]["body"] == small


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (v2([1, 16]), {"Inference-Header-Content-Length": "abc"}, 400),
        (v2([1, 16]), {"Inference-Header-Content-Length": "-1"}, 400),
        (v2([1, 16]), {"Inference-Header-Content-Length": "99999"}, 400),
        (b"{not json", {"Inference-Header-Content-Length": "9"}, 400),
        (v2([1, -16]), {}, 400),
        (b'{"inputs":[{"name":"x","shape":[1.5]}]}', {}, 400),
        (b"\x1f\x8b\x08 definitely not gzip", {"Content-Encoding": "gzip"}, 400),
        (v2([1, 16]), {"Content-Encoding": "br"}, 415),
        (gzip.compress(b" " * 9000 + v2([1])), {"Content-Encoding": "gzip"}, 413),
    ],
)
async def test_unreadable_headers_and_shapes_are_4xx_json(
    body: bytes,
    headers: dict[str, str],
    status: int,
    client: httpx.AsyncClient,
    backend: Backend,
) -> None:
    r = await client.post("/v2/models/demo/infer", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert "error" in r.json() and not backend.seen


async def test_body_over_the_size_limit_is_413(client: httpx.AsyncClient, backend: Backend) -> None:
    r = await client.post("/v2/models/demo/infer", content=b"x" * 9000)
    assert r.status_code == 413 and "limit" in r.json()["error"] and not backend.seen


async def test_element_limit_zero_means_unlimited(store: LocalStore, backend: Backend) -> None:
    router = create_app(store, settings=settings(max_elements=0))
    try:
        transport = httpx.ASGITransport(app=router)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
            r = await c.post("/v2/models/demo/infer", content=v2([10**9]))
            assert r.status_code == 200
    finally:
        await router.runtime.stop()


class Canary:
    """A loopback server nothing should ever reach; it counts what does."""

    def __init__(self) -> None:
        self.hits: list[str] = []

    async def any(self, request: web.Request) -> web.Response:
        self.hits.append(f"{request.method} {request.path_qs}")
        return web.json_response({"canary": True})


@asynccontextmanager
async def aiohttp_server(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def canary() -> AsyncIterator[tuple[Canary, str]]:
    c = Canary()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", c.any)
    async with aiohttp_server(app) as url:
        yield c, url


async def test_a_backend_redirect_to_another_server_is_not_followed(
    store: LocalStore, client: httpx.AsyncClient
) -> None:
    codes = [302, 301, 303, 307, 308]
    async with canary() as (target, target_url):

        async def redirect(request: web.Request) -> web.Response:
            await request.read()
            location = f"{target_url}/v2/models/demo/infer"
            return web.Response(status=codes[0], headers={"Location": location})

        app = web.Application()
        app.router.add_post("/v2/models/{name}/infer", redirect)
        async with aiohttp_server(app) as url:
            seed(store, models=[demo_model_version()], pools=[make_pool("pa", url)])
            while codes:
                r = await client.post("/v2/models/demo/infer", content=v2([1, 16]))
                assert r.status_code == codes.pop(0) and r.headers["x-mpfn-pool"] == "pa"
                assert r.headers["location"].startswith(target_url)  # relayed, not followed
    assert target.hits == []


async def test_requests_reach_only_registered_pool_endpoints(
    store: LocalStore, client: httpx.AsyncClient, backend: Backend
) -> None:
    async with canary() as (target, url):
        host = url.removeprefix("http://")
        attempts: list[tuple[str, str, dict[str, str], bytes]] = [
            ("POST", f"/v2/models/{host}/infer", {}, v2([1])),
            ("POST", "/v2/models/demo/infer", {"Host": host}, v2([1])),
            ("POST", "/v2/models/demo/infer", {"x-mpfn-pool": url}, v2([1])),
            ("POST", "/v2/models/demo/infer", {"x-mpfn-pool": host}, v2([1])),
            ("POST", "/v2/models/demo/infer", {"X-Forwarded-Host": host}, v2([1])),
            ("POST", f"/v2/models/demo/infer?target={url}", {}, v2([1])),
            ("POST", f"/v2/models/@{host}/infer", {}, v2([1])),
            ("POST", "/v2/models/demo/versions/..%2F..%2Frepository/infer", {}, v2([1])),
            ("POST", "/v2/repository/models/demo/load", {}, b"{}"),
            ("POST", "/v2/repository/index", {}, b"{}"),
            ("POST", "/v1/embeddings", {}, json.dumps({"model": url, "input": "x"}).encode()),
        ]
        for method, path, headers, body in attempts:
            r = await client.request(method, path, headers=headers, content=body)
            assert r.status_code < 500 or r.headers.get("x-mpfn-pool") == "pa", (path, r.text)
    assert target.hits == []
    assert all(s["path"] == "/v2/models/demo/infer" for s in backend.seen)


def test_absolute_form_request_targets_go_to_the_pool(tmp_path: Path) -> None:
    """An HTTP request line naming another server still only reaches the registered pool."""
    import asyncio
    import threading

    hits: list[str] = []
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    urls: dict[str, str] = {}

    async def main(stop: asyncio.Event) -> None:
        async with canary() as (target, url), serve(Backend("a")) as a:
            urls["canary"], urls["pool"] = url, a.url
            ready.set()
            await stop.wait()
            hits.extend(target.hits)

    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(stop),), daemon=True)
    thread.start()
    assert ready.wait(30)
    store = LocalStore(tmp_path / "state")
    seed(store, models=[demo_model_version()], pools=[make_pool("pa", urls["pool"])])
    router = start_router(store, tmp_path / "logs")
    try:
        body = v2([1, 16])
        line = f"POST {urls['canary']}/v2/models/demo/infer HTTP/1.1\r\n"
        request = (
            line + f"Host: {urls['canary'].removeprefix('http://')}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
            s.sendall(request)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
        assert b"x-mpfn-pool: pa" in answer
    finally:
        router.stop()
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
    assert hits == []
