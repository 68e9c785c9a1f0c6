"""The worker's Open Inference Protocol v2 gRPC service (`--grpc-port`), beside REST.

`inference.GRPCInferenceService` on grpc.aio, in the same process and event loop as the
REST server and over the same `WorkerApp`: one model repository, one admission limit,
one inference entry point (`WorkerApp.infer`), one set of metrics. `with_grpc` wraps
the ASGI app so that the gRPC server starts once the worker is ready (after `--preload`)
and stops, letting running calls finish, when the worker shuts down.

An answer uses raw contents when the request did, typed contents otherwise; it carries
the load feedback as trailing metadata (`x-mpfn-inflight`, `x-mpfn-queued`, and
`x-mpfn-load-ms` after a cold load). Errors are gRPC status codes with the REST message:
unknown model NOT_FOUND, bad tensors INVALID_ARGUMENT, queue full RESOURCE_EXHAUSTED, a
model that cannot be loaded UNAVAILABLE, a missing or wrong `--token-file` token
(`authorization: Bearer ...` metadata) UNAUTHENTICATED; each is logged once at WARNING on
`mpfn.worker`, as REST errors are.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from mpfn.adapters.ort_worker.app import (
    EXTENSIONS,
    PLATFORM,
    SERVER_NAME,
    WorkerApp,
    _failure,
    _version,
)
from mpfn.adapters.ort_worker.errors import WorkerError
from mpfn.adapters.ort_worker.http import Message, Receive, Scope, Send
from mpfn.protocol import OutputTensor
from mpfn.protocol import grpc_predict_v2_pb2 as pb
from mpfn.protocol.grpc_codec import encode_grpc_response, grpc_status, parse_grpc_request
from mpfn.protocol.grpc_service import add_service

log = logging.getLogger("mpfn.worker")

GRACE_S = 30.0  # running calls may finish within this at shutdown
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _authorization(context: grpc.aio.ServicerContext) -> bytes | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value.encode("latin-1") if isinstance(value, str) else value
    return None


class WorkerService:
    """The six methods of the service over one `WorkerApp`."""

    def __init__(self, app: WorkerApp) -> None:
        self.app = app

    async def _fail(self, context: grpc.aio.ServicerContext, exc: BaseException) -> None:
        status, message, _ = _failure(exc)
        log.warning("gRPC -> %s: %s", grpc_status(status).name, message)
        await context.abort(grpc_status(status), message)

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.app.ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            self.app.access.check(_authorization(context))
        except WorkerError as exc:
            await self._fail(context, exc)
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=_version(), extensions=EXTENSIONS
        )

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        version = request.version or None
        try:
            self.app.access.check(_authorization(context))
            if self.app.repository.loaded_for(request.name, version) is not None:
                return pb.ModelReadyResponse(ready=True)
            await self.app.repository.document(request.name, version)  # NOT_FOUND if unknown
        except Exception as exc:
            await self._fail(context, exc)
        return pb.ModelReadyResponse(ready=False)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        repository = self.app.repository
        name, version = request.name, request.version or None
        try:
            self.app.access.check(_authorization(context))
            doc = await repository.document(name, version)
            loaded = repository.loaded_for(name, doc.version)
            if version is None:
                versions = set(await repository.versions(name))
                versions.update(
                    m.doc.version for m in repository.loaded.values() if m.doc.name == name
                )
            else:
                versions = {doc.version}
        except Exception as exc:
            await self._fail(context, exc)
            raise  # unreachable: abort raises
        msg = pb.ModelMetadataResponse(name=name, versions=sorted(versions), platform=PLATFORM)
        for kind, specs in (
            ("inputs", loaded.inputs if loaded else doc.inputs),
            ("outputs", loaded.outputs if loaded else doc.outputs),
        ):
            for spec in specs:
                getattr(msg, kind).add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
        return msg

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        app = self.app
        started = time.perf_counter()
        name, version = request.model_name, request.model_version or None
        label = "" if app.repository.loaded_for(name, version) is None else name
        try:
            app.access.check(_authorization(context))
            parsed = parse_grpc_request(request)
            model, cold = await app.model_for(name, version)
            label = name  # never a label for unknown names
            wanted, arrays = await app.infer(model, parsed)
            answer = encode_grpc_response(
                name,
                model.doc.version,
                [OutputTensor(o.name, a) for o, a in zip(wanted, arrays, strict=True)],
                request_id=parsed.id,
                raw=bool(request.raw_input_contents),
            )
        except Exception as exc:
            status, message, _ = _failure(exc)
            app.metrics.observe_request(label, status, time.perf_counter() - started)
            context.set_trailing_metadata(self._load_metadata())
            log.warning("gRPC ModelInfer %s -> %s: %s", name, grpc_status(status).name, message)
            await context.abort(grpc_status(status), message)
            raise  # unreachable: abort raises
        feedback = self._load_metadata()
        if cold:
            feedback.append(("x-mpfn-load-ms", f"{model.load_ms:.1f}"))
        context.set_trailing_metadata(feedback)
        app.metrics.observe_request(label, 200, time.perf_counter() - started)
        return answer

    def _load_metadata(self) -> list[tuple[str, str]]:
        """The load headers REST answers carry (batched rows included)."""
        return [(k.decode(), v.decode()) for k, v in self.app.load_headers()]


def server_credentials(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> grpc.ServerCredentials | None:
    """TLS for the gRPC port from the REST flags (`--tls-cert`, `--tls-key`,
    `--tls-client-ca`); None: plaintext."""
    if cert is None or key is None:
        return None
    ca = client_ca.read_bytes() if client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


async def start_grpc(
    app: WorkerApp, host: str, port: int, credentials: grpc.ServerCredentials | None = None
) -> grpc.aio.Server:
    """A started gRPC server for `app` on host:port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", app.max_body_bytes or MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", -1),
        ]
    )
    add_service(server, WorkerService(app))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    if bound == 0:
        raise OSError(f"gRPC: could not bind {address}")
    await server.start()
    log.info("gRPC on %s", address)
    return server


class WithGrpc:
    """The worker's ASGI app, starting and stopping the gRPC server with its lifespan."""

    def __init__(
        self,
        app: WorkerApp,
        host: str,
        port: int,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.credentials = credentials
        self.server: grpc.aio.Server | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and self.server is not None:
                await self.server.stop(GRACE_S)
                self.server = None
            return message

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                try:
                    self.server = await start_grpc(self.app, self.host, self.port, self.credentials)
                except Exception as exc:
                    text = f"cannot serve gRPC on port {self.port}: {exc}"
                    await send({"type": "lifespan.startup.failed", "message": text})
                    return
            await send(message)

        await self.app(scope, lifespan_receive, lifespan_send)
