"""`mpfn up`'s control endpoint: the scaler of its local pools.

A small HTTP server on loopback, for the local scaler (`mpfn.scaling`, kind `local`) of
routers, the warm loop and `mpfn pools scale`: `GET /pools/ID` answers the pool's size
(0 or 1: a local pool is one worker process), `POST /pools/ID/scale {"replicas": N}`
stops or starts its worker. Every call needs `Authorization: Bearer TOKEN`, the token
`mpfn up` makes at start (`<state>/tls/control-token`, mode 0600) and gives its routers
as `MPFN_SCALE_TOKEN`. Errors are JSON bodies saying what is wrong.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN_FILE = "control-token"
POOL = re.compile(r"^/pools/([A-Za-z0-9][A-Za-z0-9._-]{0,127})(/scale)?$")

#: get(pool) -> size or None (unknown pool); set(pool, replicas) -> None
Sizes = tuple[Callable[[str], int | None], Callable[[str, int], None]]


def make_token(directory: Path) -> str:
    """A fresh token in `directory/control-token` (owner-only)."""
    directory.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path = directory / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def read_token(directory: Path) -> str | None:
    try:
        return (directory / TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


def _handler(token: str, sizes: Sizes) -> type[BaseHTTPRequestHandler]:
    get, set_size = sizes

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return self._send(401, {"error": "a bearer token is required (MPFN_SCALE_TOKEN)"})
            match = POOL.match(self.path)
            if match is None:
                return self._send(404, {"error": f"no such path {self.path}"})
            pool, scale = match.group(1), match.group(2)
            size = get(pool)
            if size is None:
                return self._send(404, {"error": f"no local pool {pool!r} in this stack"})
            if self.command == "GET" and not scale:
                return self._send(200, {"pool": pool, "replicas": size})
            if self.command != "POST" or not scale:
                return self._send(405, {"error": f"{self.command} {self.path} is not served"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
                replicas = json.loads(self.rfile.read(length) or b"{}").get("replicas")
            except (ValueError, AttributeError):
                return self._send(400, {"error": 'the body must be JSON: {"replicas": N}'})
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                return self._send(400, {"error": "replicas must be a whole number >= 0"})
            if replicas > 1:
                return self._send(
                    400, {"error": "a local pool runs one worker: replicas is 0 or 1"}
                )
            set_size(pool, replicas)
            return self._send(200, {"pool": pool, "replicas": replicas})

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class ControlServer:
    """The control endpoint on 127.0.0.1:`port`, served from a daemon thread."""

    def __init__(self, port: int, token: str, sizes: Sizes) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(token, sizes))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="mpfn-up-control", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
