"""The router's HTTP/1.1 client for its requests to pools: keep-alive connections, nothing else.

A request to a pool is one POST whose body the router already holds, and its answer is
relayed as it is; no redirects, cookies, decompression, proxies or retries of requests
the pool may have seen. That is all this client does, on `asyncio` protocols, for a
fraction of a general-purpose client's cost per request (`benchmarks/router_overhead.py`).

- Connections are kept per (host, port, TLS context, server name) and reused newest
  first; one idle longer than `keepalive_s`, or closed by the pool, is never reused. A
  request whose reused connection the pool closed before any byte of an answer (almost
  always the pool's keep-alive ending just as the request went out) is sent once more,
  on a new connection; one that got any byte of an answer is never sent again.
- `https` endpoints use the TLS context given (a pool's own CA and client certificate),
  else the system's trust store.
- Answers are parsed as they arrive: `Content-Length`, `chunked` (decoded) or, without
  either, up to the end of the connection. Reading pauses while more than `HIGH_WATER`
  bytes of a streamed answer wait to be relayed.
- Connecting is bounded by `connect_timeout_s`; every other wait by the caller (the
  forwarder's timer per attempt). A cancelled request closes its connection.

Failures raise `PoolClientError` with a short reason (`connection refused`,
`tls: certificate verify failed: ...`, `pool closed the connection`).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

HIGH_WATER = 1 << 20  # bytes of a streamed answer buffered before reading pauses
MAX_HEAD = 64 * 1024  # the longest status line + headers accepted
_NO_BODY = frozenset({204, 304})


class PoolClientError(Exception):
    """A request to a pool that got no (complete) answer; `str()` says why."""


Endpoint = tuple[str, int, bool, str, str]  # host, port, tls, Host header, base path


def endpoint_of(url: str) -> Endpoint:
    """(host, port, tls, Host header value, base path) of a pool endpoint URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PoolClientError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    host_header = name if parts.port is None else f"{name}:{port}"
    return parts.hostname, port, tls, host_header, parts.path.rstrip("/")


def describe_os_error(exc: BaseException) -> str:
    """A short reason for a failure to connect or to talk TLS."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"tls: certificate verify failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"tls: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class PoolResponse:
    """One answer: `status`, `raw_headers` (lower-case names, as received), `headers`
    (lower-case name -> value), and the body through `read` or `readany`."""

    __slots__ = ("_conn", "content_length", "content_type", "headers", "raw_headers", "status")

    def __init__(self, conn: _Connection, status: int, raw: list[tuple[bytes, bytes]]) -> None:
        self._conn = conn
        self.status = status
        self.raw_headers = raw
        self.headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
        self.content_type = self.headers.get("content-type", "").split(";", 1)[0].strip()
        self.content_length = conn.length if conn.mode == "length" else None

    async def read(self) -> bytes:
        """The whole body."""
        conn = self._conn
        conn.whole = True  # all of it is kept anyway: never pause reading
        while not conn.complete:
            await conn.wait_body()
        return conn.take()

    async def readany(self) -> bytes:
        """The next part of the body as it arrives; b"" once it is all read."""
        conn = self._conn
        while not conn.chunks and not conn.complete:
            await conn.wait_body()
        if not conn.chunks:
            return b""
        data = conn.take()
        conn.resume()
        return data

    def release(self) -> None:
        """Done with the answer: its connection goes back for reuse when the answer was
        read to the end and the pool keeps connections open, else it is closed."""
        self._conn.finish()

    def close(self) -> None:
        self._conn.close()


class _Connection(asyncio.Protocol):
    """One connection to a pool, parsing one answer at a time."""

    def __init__(self, client: PoolClient, key: tuple[object, ...]) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.buf = b""
        self.head: asyncio.Future[PoolResponse] | None = None
        self.mode = ""  # "length", "chunked", "close" once the head is read
        self.length = 0  # body bytes still to come ("length"), or of this chunk
        self.chunk_state = 0  # chunked: 0 size line, 1 data, 2 CRLF after data, 3 trailers
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.whole = False  # read whole (`read`), not relayed part by part
        self.complete = False
        self.keep_alive = True
        self.received = False  # any byte of the answer
        self.error: PoolClientError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head is not None and not self.complete:
            if self.mode == "close" and exc is None:
                self._done()  # an answer delimited by the end of the connection
                return
            why = "pool closed the connection" if exc is None else describe_os_error(exc)
            self._fail(PoolClientError(why))

    def data_received(self, data: bytes) -> None:
        if self.head is None or self.complete:
            self.close()  # nothing was asked: a misbehaving pool
            return
        self.received = True
        self.buf = self.buf + data if self.buf else data
        try:
            self._parse()
        except PoolClientError as exc:
            self._fail(exc)
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost ends the answer

    # parsing

    def _parse(self) -> None:
        if not self.mode:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    raise PoolClientError("answer head too long")
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            response = self._read_head(head)
            if response is None:  # 1xx: the real answer follows
                self._parse()
                return
            assert self.head is not None
            if not self.head.done():
                self.head.set_result(response)
        if self.mode == "length":
            self._take_length()
        elif self.mode == "chunked":
            self._take_chunked()
        elif self.buf:  # "close": everything until the end of the connection
            self._append(self.buf)
            self.buf = b""

    def _read_head(self, head: bytes) -> PoolResponse | None:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
            raise PoolClientError(f"not an HTTP/1.x answer: {status_line[:40]!r}")
        try:
            status = int(status_line[9:12])
        except ValueError:
            raise PoolClientError(f"bad status line {status_line[:40]!r}") from None
        if 100 <= status < 200:
            return None
        raw: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = False
        keep_alive = status_line[7:8] == b"1"  # HTTP/1.1; 1.0 closes unless asked
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise PoolClientError("malformed header line in the answer")
            name = name.strip().lower()
            value = value.strip()
            raw.append((name, value))
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise PoolClientError("bad Content-Length in the answer") from None
            elif name == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif name == b"connection":
                tokens = value.lower()
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        self.keep_alive = keep_alive
        if status in _NO_BODY:
            self.mode, self.length = "length", 0
        elif chunked:
            self.mode = "chunked"
        elif length is not None:
            if length < 0:
                raise PoolClientError("bad Content-Length in the answer")
            self.mode, self.length = "length", length
        else:
            self.mode, self.keep_alive = "close", False
        response = PoolResponse(self, status, raw)
        if self.mode == "length" and self.length == 0:
            self._done()
        return response

    def _take_length(self) -> None:
        if not self.buf:
            return
        data = self.buf
        if len(data) > self.length:
            raise PoolClientError("the pool sent more than its Content-Length")
        self.buf = b""
        self.length -= len(data)
        self._append(data)
        if self.length == 0:
            self._done()

    def _take_chunked(self) -> None:
        while self.buf:
            if self.chunk_state == 0:  # size line
                end = self.buf.find(b"\r\n")
                if end < 0:
                    if len(self.buf) > 1024:
                        raise PoolClientError("bad chunk size line in the answer")
                    return
                line, self.buf = self.buf[:end], self.buf[end + 2 :]
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise PoolClientError("bad chunk size in the answer") from None
                if size < 0:
                    raise PoolClientError("bad chunk size in the answer")
                self.length = size
                self.chunk_state = 1 if size else 3
            elif self.chunk_state == 1:  # data
                take = self.buf[: self.length]
                self.buf = self.buf[len(take) :]
                self.length -= len(take)
                self._append(take)
                if self.length == 0:
                    self.chunk_state = 2
            elif self.chunk_state == 2:  # the CRLF after a chunk's data
                if len(self.buf) < 2:
                    return
                if self.buf[:2] != b"\r\n":
                    raise PoolClientError("malformed chunk in the answer")
                self.buf = self.buf[2:]
                self.chunk_state = 0
            else:  # trailers, up to an empty line
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                line, self.buf = self.buf[:end], self.buf[end + 2 :]
                if not line:
                    self._done()
                    return

    def _append(self, data: bytes) -> None:
        if data:
            self.chunks.append(data)
            self.buffered += len(data)
            over = self.buffered > HIGH_WATER and not self.whole
            if over and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            self._wake()

    def _done(self) -> None:
        self.complete = True
        if self.buf:  # bytes after the answer: the connection cannot be trusted
            self.keep_alive = False
        self._wake()

    def _fail(self, exc: PoolClientError) -> None:
        self.error = exc
        self.keep_alive = False
        if self.head is not None and not self.head.done():
            self.head.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> bytes:
        """The body bytes received and not yet taken."""
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        return data

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    async def wait_body(self) -> None:
        if self.error is not None:
            raise self.error
        self.resume()
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter
        self._waiter = None
        if self.error is not None and not self.chunks:
            raise self.error

    # use

    def send(self, request: bytes) -> asyncio.Future[PoolResponse]:
        self._reset()
        self.head = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)
        return self.head

    def finish(self) -> None:
        if self.complete and self.keep_alive and not self.closed and self.error is None:
            self.head = None
            self.chunks.clear()
            self.buffered = 0
            self.resume()  # a long answer may have paused reading
            self.client.give_back(self)
        else:
            self.close()

    def close(self) -> None:
        self.keep_alive = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()


class PoolClient:
    """Keep-alive connections to pools and one method, `post`."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 2.0,
        keepalive_s: float = 30.0,
        max_idle: int = 256,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self.max_idle = max_idle  # idle connections kept per key
        self._idle: dict[tuple[object, ...], list[_Connection]] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._default_tls: ssl.SSLContext | None = None
        self._closed = False

    def endpoint(self, base: str) -> Endpoint:
        found = self._endpoints.get(base)
        if found is None:
            found = self._endpoints[base] = endpoint_of(base)
        return found

    async def post(
        self,
        base: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> PoolResponse:
        """POST `body` to `path` under the endpoint URL `base`; the answer once its
        head is in. The caller must `release()` (or `close()`) it."""
        host, port, tls, host_header, prefix = self.endpoint(base)
        request = _request_bytes(prefix + path, host_header, body, headers)
        context = (ssl_context or self._tls()) if tls else None
        key = (host, port, context, server_hostname)
        conn = self._take_idle(key)
        if conn is not None:
            head = conn.send(request)
            try:
                return await head
            except PoolClientError:
                if conn.received:  # the pool saw it and answered badly: not sent again
                    conn.close()
                    raise
                conn.close()  # closed by the pool while idle: once more on a new one
            except BaseException:
                conn.close()
                raise
        conn = await self._connect(key, host, port, context, server_hostname)
        try:
            return await conn.send(request)
        except BaseException:
            conn.close()
            raise

    def _tls(self) -> ssl.SSLContext:
        if self._default_tls is None:
            self._default_tls = ssl.create_default_context()
        return self._default_tls

    def _take_idle(self, key: tuple[object, ...]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest = time.monotonic() - self.keepalive_s
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since >= oldest:
                return conn
            conn.close()
        return None

    async def _connect(
        self,
        key: tuple[object, ...],
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        name = server_hostname if context is not None and server_hostname else None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, key), host, port, ssl=context, server_hostname=name
                )
        except TimeoutError:
            raise PoolClientError(f"cannot connect to {host}:{port}: timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise PoolClientError(
                f"cannot connect to {host}:{port}: {describe_os_error(exc)}"
            ) from None
        return conn

    def give_back(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def _request_bytes(path: str, host: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
            raise PoolClientError(f"header {name!r} cannot be sent")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + body
