"""The router's HTTP/1.1 client to pools, against raw HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from mpfn.functions.router.poolclient import HIGH_WATER, PoolClient, PoolClientError

# (request head, request body) -> raw answer bytes; None: close the connection instead
Answer = Callable[[bytes, bytes], Awaitable[bytes | None]]


class RawServer:
    """Counts connections and requests; answers each request with `answer`."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                out = await self.answer(head, body)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if out.startswith(b"HTTP/1.0"):  # no keep-alive: the end of the answer
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[tuple[RawServer, str]]:
    server = RawServer(answer)
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        srv.close()
        for writer in server.writers:
            writer.close()


def fixed(data: bytes) -> Answer:
    async def answer(head: bytes, body: bytes) -> bytes:
        return data

    return answer


def echo_answer(extra: bytes = b"") -> Answer:
    async def answer(head: bytes, body: bytes) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nx-mpfn-queued: 3\r\n%s\r\n"
            % (
                len(body),
                extra,
            )
            + body
        )

    return answer


async def test_keep_alive_connections_are_reused_and_the_request_is_sent_as_given() -> None:
    async with raw_server(echo_answer()) as (server, url):
        client = PoolClient()
        for i in range(3):
            resp = await client.post(url + "/base/", f"/v2/models/m{i}/infer", b"hello",
                                     {"content-type": "application/json"})  # fmt: skip
            assert resp.status == 200 and await resp.read() == b"hello"
            assert resp.headers["x-mpfn-queued"] == "3" and resp.content_length == 5
            assert (b"x-mpfn-queued", b"3") in resp.raw_headers
            resp.release()
        await client.close()
    assert server.connections == 1
    head = server.requests[2][0].decode()
    assert head.startswith("POST /base/v2/models/m2/infer HTTP/1.1\r\n")
    assert "host: 127.0.0.1:" in head and "content-type: application/json" in head


async def test_chunked_answers_are_decoded_and_streamed_part_by_part() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
               b"transfer-encoding: chunked\r\n\r\n"
               b"6;ext=1\r\ndata: \r\n3\r\none\r\n0\r\nx-trailer: 1\r\n\r\n")  # fmt: skip
    async with raw_server(fixed(chunked)) as (server, url):
        client = PoolClient()
        resp = await client.post(url, "/x", b"", {})
        assert resp.content_length is None and resp.content_type == "text/event-stream"
        parts = []
        while part := await resp.readany():
            parts.append(part)
        assert b"".join(parts) == b"data: one"
        resp.release()
        again = await client.post(url, "/x", b"", {})
        assert await again.read() == b"data: one"
        again.release()
        await client.close()
    assert server.connections == 1


async def test_an_answer_without_length_ends_with_its_connection() -> None:
    answers = iter([b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it"])

    async def once(head: bytes, body: bytes) -> bytes | None:
        return next(answers, None)

    async with raw_server(once) as (_, url):
        client = PoolClient()
        resp = await client.post(url, "/x", b"", {})
        assert resp.status == 200 and resp.content_length is None
        resp_body = await asyncio.wait_for(resp.read(), 5)
        assert resp_body == b"all of it"
        resp.release()
        await client.close()


async def test_a_connection_the_pool_closed_while_idle_is_not_reused() -> None:
    async with raw_server(echo_answer()) as (server, url):
        client = PoolClient()
        resp = await client.post(url, "/x", b"1", {})
        assert await resp.read() == b"1"
        resp.release()
        for writer in server.writers:  # the pool's keep-alive timeout
            writer.close()
        await asyncio.sleep(0.1)
        resp = await client.post(url, "/x", b"2", {})
        assert await resp.read() == b"2"
        resp.release()
        await client.close()
    assert server.connections == 2


async def test_a_request_on_a_connection_closed_under_it_is_sent_once_more() -> None:
    async def first_closes(head: bytes, body: bytes) -> bytes | None:
        if body == b"drop":
            return None  # the pool closes without answering, as at its keep-alive end
        return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    async with raw_server(first_closes) as (server, url):
        client = PoolClient()
        resp = await client.post(url, "/x", b"a", {})
        assert await resp.read() == b"ok"
        resp.release()
        # On the reused connection and then on a new one; the second failure is final.
        with pytest.raises(PoolClientError, match="pool closed the connection"):
            await client.post(url, "/x", b"drop", {})
        await client.close()
    assert [body for _, body in server.requests] == [b"a", b"drop", b"drop"]


async def test_a_long_answer_is_read_whole_and_its_connection_reused() -> None:
    big = b"z" * (3 * HIGH_WATER)
    async with raw_server(echo_answer()) as (server, url):
        client = PoolClient()
        for _ in range(3):
            resp = await client.post(url, "/x", big, {})
            assert await asyncio.wait_for(resp.read(), 10) == big
            resp.release()
        await client.close()
    assert server.connections == 1


async def test_failures_say_what_went_wrong() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens on it
    client = PoolClient(connect_timeout_s=2.0)
    with pytest.raises(PoolClientError, match="connection refused"):
        await client.post(f"http://127.0.0.1:{port}", "/x", b"", {})
    with pytest.raises(PoolClientError, match="cannot be sent"):
        await client.post(f"http://127.0.0.1:{port}", "/x", b"", {"x-a": "1\r\nx-b: 2"})
    async with raw_server(fixed(b"SPDY/3 200 OK\r\n\r\n")) as (_, url):
        with pytest.raises(PoolClientError, match=r"not an HTTP/1\.x answer"):
            await client.post(url, "/x", b"", {})
    async with raw_server(fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")) as (
        server,
        url,
    ):
        resp = await client.post(url, "/x", b"", {})
        for writer in server.writers:
            writer.close()
        with pytest.raises(PoolClientError, match="pool closed the connection"):
            await asyncio.wait_for(resp.read(), 5)
        resp.release()
    await client.close()


async def test_a_long_streamed_answer_pauses_reading_and_arrives_whole() -> None:
    part = b"y" * 65536
    parts = 48  # 3 MiB, more than HIGH_WATER waiting when the reader is slow
    stream = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        + (b"%x\r\n%s\r\n" % (len(part), part)) * parts
        + b"0\r\n\r\n"
    )
    async with raw_server(fixed(stream)) as (server, url):
        client = PoolClient()
        resp = await client.post(url, "/x", b"", {})
        await asyncio.sleep(0.2)  # the pool sends everything before the first read
        received = b""
        while chunk := await asyncio.wait_for(resp.readany(), 5):
            received += chunk
        assert received == part * parts
        resp.release()
        again = await client.post(url, "/x", b"", {})
        assert len(await asyncio.wait_for(again.read(), 5)) == len(part) * parts
        again.release()
        await client.close()
    assert server.connections == 1
