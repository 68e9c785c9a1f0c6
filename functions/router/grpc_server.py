"""The router's gRPC front door: `inference.GRPCInferenceService` (Open Inference Protocol
v2) on its own port (`MPFN_ROUTER_GRPC_PORT`), beside REST.

Every call becomes the equivalent REST request on the same `RouterApp`, so it passes the
same pipeline: API keys (`authorization: Bearer ...` metadata), model scopes and rate
limits, routing hints (`x-mpfn-*` metadata, as the REST headers), limits, one routing
decision (`RouterRuntime.decide`), waking, admission, failover, usage counts, metrics and
spans. ServerLive/Ready, ServerMetadata, ModelMetadata and ModelReady answer from the
router's snapshot like their REST routes.

ModelInfer reaches each pool of the plan in the protocol the pool speaks: a pool whose
document names a gRPC endpoint (`options.grpc_endpoint: "HOST:PORT"`, plaintext) gets the
call over gRPC, the request bytes unchanged (only a fallback model or a version split
rewrites the model name or version) and its answer relayed as it is; any other pool gets
the REST v2 request with binary tensors and its answer is translated back (raw contents
when the request used them). A pool with `auth` credentials is always reached over REST.
gRPC answers about the request (NOT_FOUND, INVALID_ARGUMENT, ...) are relayed; UNAVAILABLE,
DEADLINE_EXCEEDED, INTERNAL, UNKNOWN and refused credentials fail over like 5xx;
RESOURCE_EXHAUSTED is backpressure like a 503 with Retry-After.

The router's own errors map to status codes: unknown model NOT_FOUND, bad tensors
INVALID_ARGUMENT, no pool UNAVAILABLE, deadline passed DEADLINE_EXCEEDED, missing or
refused key UNAUTHENTICATED, outside the key's scope PERMISSION_DENIED, rate limited
RESOURCE_EXHAUSTED. Answers carry the routing headers as trailing metadata
(`x-mpfn-pool`, `x-mpfn-route-reason`, and `retry-after`, `x-mpfn-load-ms` when set).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from starlette.types import Message

from mpfn.documents import Pool
from mpfn.functions.router.errors import error_body, send_json
from mpfn.functions.router.forward import (
    ATTEMPT_VIA,
    AttemptCall,
    Busy,
    _ms,
    header_safe,
    queued_of,
    relay_headers,
    with_attempts,
)
from mpfn.functions.router.pipeline import RouterApp, error_message
from mpfn.protocol import ProtocolError
from mpfn.protocol import grpc_predict_v2_pb2 as pb
from mpfn.protocol.grpc_codec import (
    grpc_response_from_rest,
    grpc_status,
    http_status,
    metadata_response,
    rest_request,
)
from mpfn.protocol.grpc_service import Stub, add_service
from mpfn.routing import Attempt
from mpfn.routing.errors import RouteError
from mpfn.routing.serving import infer_path, valid_name
from mpfn.routing.stats import LOAD_MS

log = logging.getLogger("mpfn.router")

GRACE_S = 20.0  # running calls may finish within this at shutdown
GRPC_ENDPOINT = "grpc_endpoint"  # pool option: "HOST:PORT" of the pool's v2 gRPC service
# Marks an answer relayed from a gRPC pool: the body is the serialized ModelInferResponse.
GRPC_ANSWER = b"application/grpc+proto"
# Metadata the router sets itself, or that describes only the gRPC hop.
DROP_METADATA = frozenset(
    {"content-type", "content-length", "content-encoding", "accept", "accept-encoding",
     "inference-header-content-length", "user-agent", "te", "host"}
)  # fmt: skip
# Request metadata a gRPC pool gets (the REST forwarder's headers that apply).
FORWARD_METADATA = ("traceparent", "tracestate", "x-request-id")
# Answers of a gRPC pool that fail over to the next pool, like a 5xx.
FAILOVER = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
     grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAUTHENTICATED,
     grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.ABORTED, grpc.StatusCode.DATA_LOSS}
)  # fmt: skip
ANSWER_METADATA = (b"x-mpfn-pool", b"x-mpfn-route-reason", b"retry-after", b"x-mpfn-load-ms")


def grpc_target(pool: Pool) -> str | None:
    """The `HOST:PORT` of a pool's gRPC service, when the router may call it there."""
    target = pool.options.get(GRPC_ENDPOINT)
    if not isinstance(target, str) or not target or pool.auth is not None:
        return None
    return target.removeprefix("grpc://")


class Answer:
    """The REST answer of one call, as the router's ASGI app sent it."""

    __slots__ = ("body", "headers", "status")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def trailing(self) -> list[tuple[str, str]]:
        """The routing headers of the answer, as metadata."""
        return [
            (k.decode("latin-1"), header_safe(v.decode("latin-1")))
            for k, v in self.headers
            if k in ANSWER_METADATA
        ]

    def message(self) -> str:
        return error_message(self.body) if self.body else f"HTTP {self.status}"


def request_headers(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> list[tuple[bytes, bytes]]:
    """A call's metadata as the headers of the REST request (binary `-bin` values, gRPC's
    own and pseudo headers left out)."""
    headers: list[tuple[bytes, bytes]] = []
    for key, value in metadata or ():
        if (
            isinstance(value, bytes)
            or key.endswith("-bin")
            or key.startswith(("grpc-", ":"))
            or key in DROP_METADATA
        ):
            continue
        headers.append((key.encode("latin-1"), value.encode("latin-1", "replace")))
    return headers


def model_path(name: str, version: str, action: str = "") -> str:
    base = f"/v2/models/{name}" if not version else f"/v2/models/{name}/versions/{version}"
    return f"{base}/{action}" if action else base


def parse_infer_path(path: str) -> tuple[str, str]:
    """(model, version or "") of an infer path the router built (`infer_path`)."""
    parts = path.removeprefix("/v2/models/").removesuffix("/infer").split("/")
    return parts[0], parts[2] if len(parts) == 3 else ""


class RouterGrpc:
    """The gRPC server of one router, over its ASGI app; a runtime service."""

    def __init__(self, app: RouterApp) -> None:
        self.app = app
        self.runtime = app.runtime
        settings = self.runtime.settings
        self.host = settings.grpc_host
        self.port = settings.grpc_port
        self.server: grpc.aio.Server | None = None
        self._stubs: dict[str, tuple[grpc.aio.Channel, Stub]] = {}

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        limit = self.runtime.settings.max_body_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", -1),
            ]
        )
        add_service(server, self, raw_requests=("ModelInfer",))
        host = self.host
        address = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        if server.add_insecure_port(address) == 0:
            raise OSError(f"gRPC: could not bind {address}")
        await server.start()
        self.server = server
        log.info("router gRPC on %s", address)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(GRACE_S)
            self.server = None
        for channel, _ in self._stubs.values():
            await channel.close()
        self._stubs.clear()

    def stub(self, target: str) -> Stub:
        found = self._stubs.get(target)
        if found is None:
            channel = grpc.aio.insecure_channel(
                target,
                options=[
                    ("grpc.max_receive_message_length", -1),
                    ("grpc.max_send_message_length", -1),
                ],
            )
            found = self._stubs[target] = (channel, Stub(channel))
        return found[1]

    # -- the REST request behind a call ---------------------------------------------------

    async def _rest(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
    ) -> Answer:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "2",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": None,
            "server": (self.host, self.port),
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        answer = Answer()
        await self.app(scope, receive, answer.send)
        return answer

    async def _get(self, path: str, context: grpc.aio.ServicerContext) -> Answer:
        answer = await self._rest("GET", path, request_headers(context.invocation_metadata()))
        context.set_trailing_metadata(answer.trailing())
        return answer

    async def _refuse(self, context: grpc.aio.ServicerContext, exc: RouteError) -> None:
        if exc.rejection:
            self.runtime.metrics.reject(exc.rejection)
        await context.abort(grpc_status(exc.status), exc.message)

    async def _admitted(
        self, context: grpc.aio.ServicerContext, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """The key check alone (for a call refused before it becomes a REST request): a
        caller without a valid key learns nothing more."""
        try:
            await self.runtime.admit("/v2/models", headers)
        except RouteError as exc:
            await self._refuse(context, exc)

    # -- the service -----------------------------------------------------------------------

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        answer = await self._get("/v2/health/live", context)
        return pb.ServerLiveResponse(live=answer.status == 200)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        answer = await self._get("/v2/health/ready", context)
        return pb.ServerReadyResponse(ready=answer.status == 200)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        answer = await self._get("/v2", context)
        if answer.status != 200:
            await context.abort(grpc_status(answer.status), answer.message())
        doc = json.loads(answer.body)
        return pb.ServerMetadataResponse(
            name=doc.get("name", ""),
            version=doc.get("version", ""),
            extensions=doc.get("extensions", []),
        )

    async def _model_call(
        self, request: Any, context: grpc.aio.ServicerContext, action: str
    ) -> Answer:
        name, version = request.name, request.version
        if not valid_name(name) or (version and not valid_name(version)):
            await self._admitted(context, request_headers(context.invocation_metadata()))
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {name!r}")
        return await self._get(model_path(name, version, action), context)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        answer = await self._model_call(request, context, "ready")
        if answer.status == 200:
            return pb.ModelReadyResponse(ready=True)
        if answer.status in (401, 403, 404, 429):
            await context.abort(grpc_status(answer.status), answer.message())
        return pb.ModelReadyResponse(ready=False)  # known, but no pool can serve it now

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        answer = await self._model_call(request, context, "")
        if answer.status != 200:
            await context.abort(grpc_status(answer.status), answer.message())
        return metadata_response(json.loads(answer.body))

    async def ModelInfer(self, raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        headers = request_headers(context.invocation_metadata())
        try:
            msg = pb.ModelInferRequest.FromString(raw)
        except DecodeError:
            await self._admitted(context, headers)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed ModelInferRequest")
            raise  # unreachable: abort raises
        name, version = msg.model_name, msg.model_version
        if not valid_name(name) or (version and not valid_name(version)):
            await self._admitted(context, headers)
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {name!r}")
        try:
            body, header_length = rest_request(msg)
        except ProtocolError as exc:
            await self._admitted(context, headers)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
            raise  # unreachable: abort raises
        headers.append((b"content-type", b"application/octet-stream"))
        headers.append((b"inference-header-content-length", str(header_length).encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        token = ATTEMPT_VIA.set(functools.partial(self._via, msg, raw))
        try:
            answer = await self._rest("POST", infer_path(name, version or None), headers, body)
        finally:
            ATTEMPT_VIA.reset(token)
        context.set_trailing_metadata(answer.trailing())
        if answer.status != 200:
            await context.abort(grpc_status(answer.status), answer.message())
        if answer.header(b"content-type") == GRPC_ANSWER:
            return answer.body  # a gRPC pool's answer, relayed as it is
        try:
            return grpc_response_from_rest(
                answer.body,
                answer.header(b"inference-header-content-length"),
                raw=bool(msg.raw_input_contents),
            )
        except ProtocolError as exc:
            message = f"the pool's answer is not a v2 inference response: {exc.message}"
            await context.abort(grpc.StatusCode.UNAVAILABLE, message)

    # -- attempts on gRPC pools ------------------------------------------------------------

    def _via(self, msg: Any, raw: bytes, attempt: Attempt) -> AttemptCall | None:
        target = grpc_target(attempt.pool)
        if target is None:
            return None
        return functools.partial(self._attempt, msg, raw, target)

    async def _attempt(
        self,
        msg: Any,
        raw: bytes,
        target: str,
        send: Any,
        attempt: Attempt,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        remaining: float,
        started: float,
        failed: list[str],
        reason: str,
        reported: list[int | None],
        wait_s: float | None = None,
        causes: Sequence[str] = (),
        left: str = "",
    ) -> int | str | Busy:
        """One attempt over gRPC, reported and relayed like `Forwarder._attempt`."""
        forwarder = self.runtime.forwarder
        state, clock = forwarder.state, forwarder.clock
        pool_id = attempt.pool.id
        name, version = parse_infer_path(path)
        payload = raw
        if name != msg.model_name or version != msg.model_version:
            other = pb.ModelInferRequest()
            other.CopyFrom(msg)
            other.model_name, other.model_version = name, version
            payload = other.SerializeToString()
        metadata = [(k, headers[k]) for k in FORWARD_METADATA if k in headers]
        deadline = wait_s if wait_s is not None else remaining
        call = self.stub(target).ModelInferRaw(payload, timeout=deadline, metadata=metadata)
        try:
            answer = await call
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            feedback = _as_headers(exc.trailing_metadata())
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                state.abandoned(pool_id)  # backpressure: the pool is healthy, and full
                reported.append(None)
                return Busy(f"busy (gRPC {code.name})")
            if code in FAILOVER:
                error = f"gRPC {code.name} {details}".strip()
                state.finished(
                    pool_id, attempt.model, _ms(started), False, feedback, clock(), error
                )
                reported.append(None)
                return error
            state.finished(pool_id, attempt.model, _ms(started), True, feedback, clock())
            reported.append(queued_of(feedback))
            status = http_status(code)
            why = with_attempts(reason, failed, causes, left)
            await send_json(send, status, error_body(details), relay_headers([], pool_id, why))
            return status
        feedback = _as_headers(await call.trailing_metadata())
        state.finished(pool_id, attempt.model, _ms(started), True, feedback, clock())
        reported.append(queued_of(feedback))
        why = with_attempts(reason, failed, causes, left)
        load = [(LOAD_MS.encode(), feedback[LOAD_MS].encode())] if LOAD_MS in feedback else []
        out = relay_headers(load, pool_id, why)
        out.append((b"content-type", GRPC_ANSWER))
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": answer})
        return 200


def _as_headers(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """Text metadata as a header mapping (for the routing state's load feedback)."""
    return {k: v for k, v in metadata or () if isinstance(v, str)}
