"""The router with the Lambda handler's settings, driven in process with Function URL events:
a buffered Function URL streams nothing (`"stream": true` is a 400 before any pool), the
body limit fits Lambda's 6 MB invoke payload (413 above it), and an answer too large for a
Lambda response is a 502 JSON error instead of a failed invocation."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion
from mpfn.functions.router.asgi import create_app
from mpfn.functions.router.lambda_handler import (
    LAMBDA_MAX_BODY_BYTES,
    Handler,
    event_loop,
    lambda_settings,
    make_handler,
)
from mpfn.functions.router.settings import RouterSettings
from mpfn.store import LocalStore
from tests.router.backend import Backend, event_data, serve
from tests.router.conftest import make_pool, seed
from tests.router.test_lambda import body_bytes, function_url_event, response_headers

TEST_ENV = {"MPFN_ROUTER_INSTANCE_ID": "test", "MPFN_ROUTER_USAGE_FLUSH_S": "3600"}
JSON = {"content-type": "application/json"}


BACKEND_MAX_BODY = 8 * 1024 * 1024


@dataclass
class ChatBackend(Backend):
    """The test backend taking bodies up to 8 MiB, counting the chat completions it got."""

    chats: int = 0

    async def infer(self, request: web.Request) -> web.StreamResponse:
        return await super().infer(request.clone(client_max_size=BACKEND_MAX_BODY))

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.chats += 1
        return await super().stream(request.clone(client_max_size=BACKEND_MAX_BODY))


@dataclass
class Router:
    store: LocalStore
    backend: ChatBackend

    def handler(self, env: dict[str, str]) -> Handler:
        """A Lambda handler over the seeded store with `lambda_settings(env)`."""
        return make_handler(create_app(self.store, settings=lambda_settings(env)))

    def contacted(self) -> int:
        return self.backend.chats + len(self.backend.seen)


@pytest.fixture
def router(tmp_path: Path) -> Iterator[Router]:
    """An OpenAI pool (`llm`) and a v2 pool (`demo`) on one echoing test backend, served on
    the loop the handler runs the router on."""
    loop = event_loop()
    backend = ChatBackend("b")
    backend.release_stream.set()  # each stream is sent whole
    server = serve(backend)
    loop.run_until_complete(server.__aenter__())
    store = LocalStore(tmp_path / "state")
    seed(
        store,
        models=[demo_model_version(), ModelVersion(name="llm", version="1", format="gguf")],
        pools=[make_pool("chat", backend.url, adapter="openai"), make_pool("pa", backend.url)],
    )
    try:
        yield Router(store, backend)
    finally:
        loop.run_until_complete(server.__aexit__(None, None, None))


def chat(body: dict[str, Any], path: str = "/v1/chat/completions") -> dict[str, Any]:
    return function_url_event(path, json.dumps(body), b64=False, headers=JSON)


def error_of(response: dict[str, Any]) -> str:
    assert response_headers(response)["content-type"] == "application/json"
    return str(json.loads(body_bytes(response))["error"])


def test_lambda_settings_default_to_lambda_limits_and_yield_to_variables() -> None:
    assert RouterSettings.from_env({}).streaming is True  # uvicorn, Cloud Run, Kubernetes
    assert RouterSettings.from_env({}).max_body_bytes == 64 * 1024 * 1024
    defaults = lambda_settings({"MPFN_ROUTER_STREAMING": "", "MPFN_ROUTER_MAX_BODY_BYTES": ""})
    assert (
        defaults.streaming is False
        and defaults.max_body_bytes == LAMBDA_MAX_BODY_BYTES == 6_000_000
    )
    chosen = lambda_settings({"MPFN_ROUTER_STREAMING": "on", "MPFN_ROUTER_MAX_BODY_BYTES": "1000"})
    assert chosen.streaming is True and chosen.max_body_bytes == 1000


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_stream_true_is_a_400_that_reaches_no_pool(router: Router, path: str) -> None:
    handler = router.handler(TEST_ENV)
    response = handler(chat({"model": "llm", "messages": [], "stream": True}, path), None)
    assert response["statusCode"] == 400, response
    message = error_of(response)
    assert "streaming is not available" in message and '"stream": false' in message
    assert "Cloud Run" in message
    headers = response_headers(response)
    assert headers["x-mpfn-pool"] == "none"
    assert headers["x-mpfn-route-reason"] == "rejected: streaming not available"
    assert router.contacted() == 0


def test_requests_without_a_stream_are_forwarded(router: Router) -> None:
    handler = router.handler(TEST_ENV)
    for body in (
        {"model": "llm", "messages": [], "stream": False},
        {"model": "llm", "messages": [{"role": "user", "content": "stream: true"}]},
    ):
        response = handler(chat(body), None)
        assert response["statusCode"] == 200, response
        assert response_headers(response)["x-mpfn-pool"] == "chat"
        assert event_data(body_bytes(response)) == [{"n": 1}, {"n": 2}]
    assert router.backend.chats == 2
    # Embeddings never stream: the flag is the backend's business there.
    embed = handler(chat({"model": "llm", "input": "hi", "stream": True}, "/v1/embeddings"), None)
    assert embed["statusCode"] == 200 and len(router.backend.seen) == 1


def test_streaming_on_under_the_lambda_handler_is_forwarded_and_arrives_whole(
    router: Router,
) -> None:
    handler = router.handler({**TEST_ENV, "MPFN_ROUTER_STREAMING": "on"})
    response = handler(chat({"model": "llm", "messages": [], "stream": True}), None)
    assert response["statusCode"] == 200, response
    assert response_headers(response)["content-type"].startswith("text/event-stream")
    assert event_data(body_bytes(response)) == [{"n": 1}, {"n": 2}]


def padded_chat(size: int) -> str:
    """A chat completion request body of exactly `size` bytes."""
    head = '{"model":"llm","messages":[],"pad":"'
    return head + "x" * (size - len(head) - 2) + '"}'


def test_body_limit_is_the_lambda_payload_cap(router: Router) -> None:
    handler = router.handler(TEST_ENV)
    fits = handler(
        function_url_event("/v1/chat/completions", padded_chat(6_000_000), b64=False, headers=JSON),
        None,
    )
    assert fits["statusCode"] == 200, fits["body"][:200]
    assert router.backend.chats == 1
    over = padded_chat(6_000_001)
    text = handler(function_url_event("/v1/chat/completions", over, b64=False, headers=JSON), None)
    assert text["statusCode"] == 413
    assert "exceeds the 6000000-byte limit" in error_of(text)
    # A base64 body is measured decoded, as the router receives it.
    encoded = base64.b64encode(over.encode()).decode()
    binary = handler(
        function_url_event("/v1/chat/completions", encoded, b64=True, headers={}), None
    )
    assert binary["statusCode"] == 413 and "6000000-byte limit" in error_of(binary)
    assert router.backend.chats == 1


def v2_request(size: int) -> str:
    """A v2 infer request body of `size` bytes or a few more (the test backend echoes it)."""
    zeros = ",".join(["0"] * (size // 2))
    return f'{{"inputs":[{{"name":"x","shape":[1,16],"datatype":"FP32","data":[{zeros}]}}]}}'


def test_an_answer_too_large_for_a_lambda_response_is_a_502_json_error(router: Router) -> None:
    handler = router.handler(TEST_ENV)

    def echo(size: int) -> dict[str, Any]:
        event = function_url_event(
            "/v2/models/demo/infer", v2_request(size), b64=False, headers=JSON
        )
        return handler(event, None)

    # The echo is binary (application/octet-stream): it leaves Lambda base64-encoded, 4/3 larger.
    small = echo(4_000_000)
    assert small["statusCode"] == 200 and small["isBase64Encoded"] is True
    large = echo(5_000_000)
    assert large["statusCode"] == 502
    message = error_of(large)
    assert "exceeds AWS Lambda's 6 MB response payload limit" in message
    assert response_headers(large)["x-mpfn-pool"] == "pa"
    assert len(router.backend.seen) == 2
