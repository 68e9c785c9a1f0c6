"""A stand-in inference backend: answers Open Inference Protocol v2 requests on loopback.

Usage: python -m tests.servers.echo_backend PORT (or `echo_backend_server` here).
Infer returns output `y` = input data doubled.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.servers.ports import start_on_free_ports
from tests.servers.process import PYTHON, ROOT, Proc, start, stopping


class Handler(BaseHTTPRequestHandler):
    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._reply(200, {"ready": True})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        first = request["inputs"][0]
        output = {**first, "name": "y", "data": [2 * v for v in first["data"]]}
        model = self.path.split("/")[3]
        self._reply(200, {"model_name": model, "outputs": [output]})

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def echo_backend_server(log_dir: Path) -> Iterator[Proc]:
    def launch(ports: list[int]) -> Proc:
        argv = [PYTHON, "-m", "tests.servers.echo_backend", str(ports[0])]
        return start(argv, port=ports[0], log_dir=log_dir, name="echo-backend", cwd=ROOT)

    with stopping(start_on_free_ports(1, launch)) as proc:
        yield proc


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
