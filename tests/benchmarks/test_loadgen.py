"""The overload benchmark's lean load generator reads answers right: status,
Retry-After, bodies split over several reads, and connections that break off."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType

from aiohttp import web

SOURCE = Path(__file__).resolve().parents[2] / "benchmarks" / "loadgen.py"


def loadgen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mpfn_bench_loadgen", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def serving(handle: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """An aiohttp server on loopback answering `POST /p` with `handle`; yields its URL."""
    app = web.Application()
    app.router.add_post("/p", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_header_values_are_found_in_a_lowercased_head() -> None:
    lg = loadgen()
    head = b"http/1.1 503 service unavailable\r\nretry-after: 1\r\ncontent-length: 12"
    assert lg.header(head, b"retry-after:") == b"1"
    assert lg.header(head, b"content-length:") == b"12"
    assert lg.header(head, b"x-missing:") is None
    request = lg.request_bytes("http://127.0.0.1:8080", "/p", b"{}", "application/json")
    assert request.startswith(b"POST /p HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n")
    assert request.endswith(b"content-length: 2\r\n\r\n{}")


def test_the_wait_is_read_as_the_openai_sdk_reads_it() -> None:
    lg = loadgen()
    assert lg.retry_after_s(b"1", b"734") == "0.734"  # milliseconds first
    assert lg.retry_after_s(b"1", None) == "1"
    assert lg.retry_after_s("2", "not a number") == "2"
    assert lg.retry_after_s(None, None) is None


async def test_closed_loop_counts_every_answer_and_its_retry_after() -> None:
    lg = loadgen()
    served = 0
    big = b"x" * 200_000  # arrives in several reads

    async def handle(request: web.Request) -> web.Response:
        nonlocal served
        await request.read()
        served += 1
        if served % 3 == 0:
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "1"})
        if served % 3 == 1:
            return web.Response(body=big)
        return web.json_response({"ok": True})

    answers: list[tuple[int, str | None]] = []
    errors = 0

    def record(status: int, ms: float, retry_after: str | None) -> float:
        assert ms >= 0
        answers.append((status, retry_after))
        return 0.0

    def error() -> None:
        nonlocal errors
        errors += 1

    async with serving(handle) as url:
        request = lg.request_bytes(url, "/p", b"{}", "application/json")
        await lg.closed_loop(url, request, 3, 0.3, record, error)
    assert errors == 0
    assert len(answers) == served > 3
    assert {s for s, _ in answers} == {200, 503}
    assert all((ra == "1") == (s == 503) for s, ra in answers)


async def test_a_connection_that_breaks_off_is_counted_and_opened_again() -> None:
    lg = loadgen()
    accepted = 0

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.close()  # no answer

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    errors = 0

    def error() -> None:
        nonlocal errors
        errors += 1

    async with server:
        request = lg.request_bytes(url, "/p", b"{}", "application/json")
        await lg.closed_loop(url, request, 1, 0.2, lambda *_: 0.0, error)
    assert errors >= 2 and accepted >= 2


async def test_each_connection_sends_its_own_request_and_a_header_is_read() -> None:
    lg = loadgen()
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        bodies.append(body)
        return web.Response(body=b"ok", headers={"X-Echo": body.decode()})

    echoed: list[bytes] = []
    async with serving(handle) as url:
        requests = [lg.request_bytes(url, "/p", b, "text/plain") for b in (b"a", b"b")]
        seen = (b"x-echo:", echoed.append)
        await lg.closed_loop(url, requests, 3, 0.2, lambda *_: 0.0, lambda: None, seen=seen)
    assert set(bodies) == {b"a", b"b"}  # connections 0 and 2 send a, connection 1 b
    assert sorted(echoed) == sorted(bodies)
