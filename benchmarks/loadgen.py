"""A lean closed-loop HTTP/1.1 load generator on raw asyncio protocols.

Each connection keeps one request in flight: the request's bytes are built once, an
answer is parsed only as far as its status line, `Content-Length` and its wait
(`retry-after-ms` when given, as the openai SDK reads it, else `Retry-After`), and
the next request leaves from the protocol's callback (no coroutine, future or response
object per request). When the load generator shares its machine's cores with the server
under test, what it costs per request is taken from the server: this one costs a few
times less than an aiohttp client, so the numbers describe the server rather than the
client. Answers must carry `Content-Length` (mpfn's router and workers always do).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from functools import partial
from urllib.parse import urlsplit

# status, milliseconds since the request left, the wait asked for in seconds (None: none;
# `retry_after_s`) -> seconds to wait before this connection's next request
Record = Callable[[int, float, "str | None"], float]
# a header to read in every answer (lowercase, with its colon), and what gets its value
Seen = tuple[bytes, Callable[[bytes], None]]


def request_bytes(url: str, path: str, body: bytes, content_type: str) -> bytes:
    """One keep-alive `POST path` to `url`'s host, with `body`."""
    host = urlsplit(url).netloc
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def retry_after_s(seconds: bytes | str | None, ms: bytes | str | None) -> str | None:
    """The wait an answer asks for, in seconds: `retry-after-ms` when given (as the openai
    SDK reads it first), else `Retry-After` (whole seconds); None when it asks for none."""
    if ms is not None:
        with contextlib.suppress(ValueError):
            return str(float(ms) / 1000.0)
    if seconds is None:
        return None
    return seconds.decode("latin-1") if isinstance(seconds, bytes) else seconds


def header(head: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lowercase, with its colon) in a lowercased head."""
    at = head.find(b"\r\n" + name)
    if at < 0:
        return None
    start = at + 2 + len(name)
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


class Connection(asyncio.Protocol):
    """One keep-alive connection sending `request` until `stop` (a `perf_counter` time)."""

    def __init__(
        self,
        request: bytes,
        stop: float,
        record: Record,
        done: asyncio.Future[bool],
        whole_seconds: bool = False,
        seen: Seen | None = None,
    ):
        self.request = request
        self.whole_seconds = whole_seconds  # read only `Retry-After`, never `retry-after-ms`
        self.seen = seen  # (header, callback): the callback gets each answer's value of it
        self.stop = stop
        self.record = record
        self.done = done  # True: ended at `stop`; False: the connection broke off
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.need = -1  # bytes of head and body of the answer being read; -1: head not read
        self.status = 0
        self.retry_after: str | None = None
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return
        if time.perf_counter() >= self.stop:
            self._end(True)
            return
        self.buf.clear()
        self.need = -1
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            length = header(head, b"content-length:")
            if length is None:  # not something this client reads: end the connection
                self._end(False)
                return
            self.status = int(head[9:12])
            self.retry_after = retry_after_s(
                header(head, b"retry-after:"),
                None if self.whole_seconds else header(head, b"retry-after-ms:"),
            )
            if self.seen is not None:
                value = header(head, self.seen[0])
                if value is not None:
                    self.seen[1](value)
            self.need = end + 4 + int(length)
        if len(buf) < self.need:
            return
        ms = (time.perf_counter() - self.started) * 1000.0
        wait = self.record(self.status, ms, self.retry_after)
        if wait > 0:
            self.loop.call_later(wait, self.send)
        else:
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(time.perf_counter() >= self.stop)

    def _end(self, at_stop: bool) -> None:
        if not self.done.done():
            self.done.set_result(at_stop)
        assert self.transport is not None
        self.transport.close()


async def closed_loop(
    url: str,
    request: bytes | Sequence[bytes],
    concurrency: int,
    seconds: float,
    record: Record,
    on_error: Callable[[], None],
    *,
    whole_seconds: bool = False,
    seen: Seen | None = None,
) -> None:
    """`concurrency` connections to `url`, each sending `request` again as soon as its
    answer is in (or after the wait `record` returns) for `seconds`; a connection that
    breaks off is counted with `on_error` and opened again. Given several requests,
    connection k sends the k-th (modulo their number). `whole_seconds`: read only
    `Retry-After`, as clients that know no `retry-after-ms` do. `seen`: a header whose
    value in each answer goes to a callback."""
    requests = [request] if isinstance(request, bytes) else list(request)
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    stop = time.perf_counter() + seconds

    async def one(k: int) -> None:
        mine = requests[k % len(requests)]
        while time.perf_counter() < stop:
            done: asyncio.Future[bool] = loop.create_future()
            try:
                protocol = partial(Connection, mine, stop, record, done, whole_seconds, seen)
                await loop.create_connection(protocol, host, port)
            except OSError:
                on_error()
                await asyncio.sleep(0.01)
                continue
            if not await done:
                on_error()

    await asyncio.gather(*(one(k) for k in range(concurrency)))
