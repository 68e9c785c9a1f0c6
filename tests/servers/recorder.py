"""A recording HTTP backend for security tests, run as its own process on loopback.

`python -m tests.servers.recorder PORT LOG [REDIRECT_URL]` (or `start_recorder` here)
appends one JSON line per request it receives (method, path, raw path, headers) to LOG.
Infer requests for a model named `redirect-NNN`
are answered with status NNN and `Location: REDIRECT_URL`; other infer requests get a small
v2 JSON answer, anything else a 200 JSON body too, so that a request wrongly sent here
would look successful to its sender. Tests read LOG to see exactly what reached it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aiohttp import web

from tests.servers.ports import start_on_free_ports
from tests.servers.process import PYTHON, ROOT, Proc, start

INFER_REDIRECT = "/v2/models/redirect-"


def make_app(log: Path, redirect_url: str) -> web.Application:
    async def record(request: web.Request) -> web.StreamResponse:
        await request.read()
        entry = {
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "headers": dict(request.headers),
        }
        with log.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
        if request.path.startswith(INFER_REDIRECT) and redirect_url:
            status = int(request.path[len(INFER_REDIRECT) :].split("/", 1)[0])
            return web.Response(status=status, headers={"Location": redirect_url})
        if request.path.endswith("/infer"):
            return web.json_response({"model_name": request.path.split("/")[3], "outputs": []})
        return web.json_response({"recorded": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return app


def main(argv: list[str]) -> None:
    port, log = int(argv[0]), Path(argv[1])
    redirect_url = argv[2] if len(argv) > 2 else ""
    log.touch()
    web.run_app(make_app(log, redirect_url), host="127.0.0.1", port=port, print=None)


def start_recorder(log_dir: Path, name: str, log: Path, redirect_url: str = "") -> Proc:
    """A recorder appending what it receives to `log`."""

    def launch(ports: list[int]) -> Proc:
        argv = [PYTHON, "-m", "tests.servers.recorder", str(ports[0]), str(log)]
        argv += [redirect_url] if redirect_url else []
        return start(argv, port=ports[0], log_dir=log_dir, name=name, cwd=ROOT)

    return start_on_free_ports(1, launch)


if __name__ == "__main__":
    main(sys.argv[1:])
