"""A small real HTTP backend (aiohttp, loopback) that echoes what the router sent it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypedDict

from aiohttp import web


class Seen(TypedDict):
    """One request as the backend received it."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Backend:
    name: str
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    error_headers: dict[str, str] = field(default_factory=dict)  # on non-200 answers
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    answered: int = 0  # infer requests answered (a request its client gave up on is not)
    release_stream: asyncio.Event = field(default_factory=asyncio.Event)

    async def infer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(path=request.path, headers=dict(request.headers), body=body))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.answered += 1
        if self.status == 307:
            return web.Response(status=307, headers={"Location": "http://127.0.0.1:9/elsewhere"})
        if self.status != 200:
            error = {"error": f"{self.name} says no"}
            return web.json_response(error, status=self.status, headers=self.error_headers)
        headers = {"x-backend": self.name, "x-mpfn-inflight": "1", **self.headers}
        if "inference-header-content-length" in request.headers:
            headers["Inference-Header-Content-Length"] = request.headers[
                "inference-header-content-length"
            ]
        return web.Response(body=body, headers=headers, content_type="application/octet-stream")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"n": 1}\n\n')
        # The second chunk is only sent once the client has seen the first one.
        await asyncio.wait_for(self.release_stream.wait(), 30)
        await resp.write(b'data: {"n": 2}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


@asynccontextmanager
async def serve(backend: Backend) -> AsyncIterator[Backend]:
    app = web.Application()
    app.router.add_post("/v2/models/{name}/infer", backend.infer)
    app.router.add_post("/v2/models/{name}/versions/{v}/infer", backend.infer)
    app.router.add_post("/v1/chat/completions", backend.stream)
    app.router.add_post("/v1/embeddings", backend.infer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    backend.url = f"http://127.0.0.1:{port}"
    try:
        yield backend
    finally:
        await runner.cleanup()


def event_data(chunk: bytes) -> list[object]:
    return [json.loads(line[6:]) for line in chunk.split(b"\n") if line.startswith(b"data: {")]
