"""A stand-in inference backend: answers Open Inference Protocol v2 requests on loopback.

Usage: python echo_backend.py PORT. Infer returns output `y` = input data doubled.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
