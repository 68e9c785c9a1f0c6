"""A stand-in for the part of the Kubernetes API that scaling uses, on loopback.

Usage: python -m tests.servers.k8s_standin PORT TOKEN [NAMESPACE/DEPLOYMENT ...]

No cluster can run here, so this small real HTTP server keeps Deployments in memory and
serves what `mpfn.scaling` calls, in the apps/v1 shapes: `GET` and merge-`PATCH` of
`/apis/apps/v1/namespaces/NS/deployments/NAME/scale` (an `autoscaling/v1` Scale), and
`GET .../deployments/NAME`. It checks the bearer token (401 otherwise) and answers 403,
as RBAC would, for a Deployment not named on the command line (the Role's
`resourceNames`); an unknown Deployment is 404, in the Kubernetes `Status` format.
`POST /_deployments` with `{"namespace", "name", "replicas"}` adds one (test setup);
`GET /_dump` returns everything. It is a stand-in: it runs no pods.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.servers.ports import start_on_free_ports
from tests.servers.process import PYTHON, ROOT, Proc, start, stopping

SCALE = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)(/scale)?$")
DEPLOYMENTS: dict[tuple[str, str], int] = {}
ALLOWED: set[tuple[str, str]] = set()
TOKEN = ""


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


def scale(ns: str, name: str) -> dict[str, Any]:
    replicas = DEPLOYMENTS[(ns, name)]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas},
    }


class Handler(BaseHTTPRequestHandler):
    def _send(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _handle(self) -> None:
        if self.path == "/_dump":
            dump = [{"namespace": n, "name": d, "replicas": r} for (n, d), r in DEPLOYMENTS.items()]
            return self._send(200, dump)
        if self.path == "/_deployments" and self.command == "POST":
            body = self._body()
            DEPLOYMENTS[(body["namespace"], body["name"])] = int(body.get("replicas", 1))
            return self._send(201, body)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, status(401, "Unauthorized", "Unauthorized"))
        match = SCALE.match(self.path)
        if match is None:
            return self._send(404, status(404, "NotFound", f"no such path {self.path}"))
        ns, name, sub = match.groups()
        if (ns, name) not in ALLOWED:
            verb = self.command.lower()
            message = f'deployments.apps "{name}" is forbidden: cannot {verb} in "{ns}"'
            return self._send(403, status(403, "Forbidden", message))
        if (ns, name) not in DEPLOYMENTS:
            return self._send(404, status(404, "NotFound", f'deployments.apps "{name}" not found'))
        if self.command == "PATCH":
            if sub is None:
                return self._send(405, status(405, "MethodNotAllowed", "patch the scale"))
            if self.headers.get("Content-Type") != "application/merge-patch+json":
                return self._send(415, status(415, "UnsupportedMediaType", "merge-patch only"))
            replicas = (self._body().get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                return self._send(422, status(422, "Invalid", "spec.replicas: must be >= 0"))
            DEPLOYMENTS[(ns, name)] = replicas
        if sub is None:
            return self._send(200, {"kind": "Deployment", "metadata": {"name": name},
                                    "spec": {"replicas": DEPLOYMENTS[(ns, name)]}})  # fmt: skip
        return self._send(200, scale(ns, name))

    do_GET = do_POST = do_PATCH = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def k8s_standin_server(log_dir: Path, token: str, allowed: Sequence[str]) -> Iterator[Proc]:
    """The stand-in; `allowed` are `namespace/deployment` the token may scale."""

    def launch(ports: list[int]) -> Proc:
        argv = [PYTHON, "-m", "tests.servers.k8s_standin", str(ports[0]), token, *allowed]
        return start(argv, port=ports[0], log_dir=log_dir, name="k8s-standin", cwd=ROOT,
                     ready_url=f"http://127.0.0.1:{ports[0]}/_dump")  # fmt: skip

    with stopping(start_on_free_ports(1, launch)) as proc:
        yield proc


if __name__ == "__main__":
    TOKEN = sys.argv[2]
    ALLOWED.update(tuple(a.split("/", 1)) for a in sys.argv[3:])  # type: ignore[misc]
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
