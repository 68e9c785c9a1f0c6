"""The worker's ASGI application: Open Inference Protocol v2 REST over a model repository.

Routes: health, server/model metadata, model ready, infer (versioned and version-less; JSON
and binary tensors, no Content-Type needed), the model-repository extension (index, load,
unload; behind the admin token when one is configured) and `/metrics`. A plain ASGI
callable: the infer hot path does no store I/O and costs one routing split, one body read,
the codec and one hop to the inference threads. Errors become JSON `{"error": ...}`
responses in one place (`_failure`); every answer that is not 2xx is logged once at
WARNING on `mpfn.worker` (method, path, status, the error's message; never headers).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any

import numpy.typing as npt
import orjson
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from mpfn.adapters.ort_worker.admission import Admission, QueueFull
from mpfn.adapters.ort_worker.batcher import Inference, Ran
from mpfn.adapters.ort_worker.errors import (
    ClientDisconnected,
    ModelNotFound,
    WorkerError,
)
from mpfn.adapters.ort_worker.guard import CHALLENGE, AccessGuard, AdminGuard, Unauthorized
from mpfn.adapters.ort_worker.http import (
    JSON,
    OCTETS,
    Message,
    Receive,
    Scope,
    Send,
    error_body,
    header,
    json_body,
    optional_json,
    read_body,
    require_method,
    respond,
    tensor_spec,
)
from mpfn.adapters.ort_worker.inline import DEFAULT_INLINE_MAX_US
from mpfn.adapters.ort_worker.metrics import CONTENT_TYPE as METRICS_TYPE
from mpfn.adapters.ort_worker.metrics import WorkerMetrics
from mpfn.adapters.ort_worker.repository import ModelRepository
from mpfn.adapters.ort_worker.session import LoadedModel
from mpfn.protocol import (
    InferRequest,
    OutputTensor,
    ProtocolError,
    RequestedOutput,
    encode_infer_response,
    parse_infer_request,
    select_outputs,
    validate_inputs,
)

log = logging.getLogger("mpfn.worker")

SERVER_NAME = "mpfn-ort-worker"
EXTENSIONS = ["binary_tensor_data", "model_repository"]
PLATFORM = "onnxruntime_onnx"
_MODELS = "/v2/models/"
_REPO_MODELS = "/v2/repository/models/"
LOGGED_BODY_BYTES = 2048  # of an error answer's body, read for its message


class Faults:
    """Deliberate degradation, a test and benchmark aid (`--inject-delay-ms`,
    `--inject-error-rate`): each inference takes `delay_ms` longer (while holding its
    concurrency slot, like slower hardware) and an `error_rate` fraction of them is answered
    with 503 before running. Off (zero) by default."""

    def __init__(self, delay_ms: float = 0.0, error_rate: float = 0.0, seed: int | None = None):
        self.delay_s = delay_ms / 1000.0
        self.error_rate = error_rate
        self._rng = random.Random(seed)

    def fail_now(self) -> bool:
        return self.error_rate > 0.0 and self._rng.random() < self.error_rate


NO_FAULTS = Faults()
OPEN = AdminGuard(None)


def _version() -> str:
    try:
        return metadata.version("mpfn")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout only
        return "0"


class WorkerApp:
    """ASGI callable serving one repository with bounded concurrency."""

    def __init__(
        self,
        repository: ModelRepository,
        *,
        max_concurrency: int = 2,
        max_queue: int = 64,
        max_body_bytes: int = 64 * 1024 * 1024,
        preload: Sequence[tuple[str, str | None]] = (),
        faults: Faults = NO_FAULTS,
        admin: AdminGuard = OPEN,
        access: AccessGuard | None = None,
        inline_max_us: int = DEFAULT_INLINE_MAX_US,
    ) -> None:
        self.repository = repository
        self.faults = faults
        self.admin = admin
        self.access = access or AccessGuard(None)
        self.metrics: WorkerMetrics = repository.metrics
        self.admission = Admission(max_concurrency, max_queue)
        self.executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="ort-infer")
        self.inference = Inference(
            self.admission, self.executor, self.metrics, faults, inline_max_us / 1e6
        )
        self.max_body_bytes = max_body_bytes
        self.preload = list(preload)
        self.ready = False
        self.server_metadata = json_body(
            {"name": SERVER_NAME, "version": _version(), "extensions": EXTENSIONS}
        )
        self.metrics.bind_gauges(
            inflight=lambda: self.inference.inflight,
            queued=lambda: self.inference.queued,
            loaded=lambda: len(self.repository.loaded),
            memory_mb=self.repository.memory_used_mb,
        )

    # -- ASGI entry ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    def load_headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-mpfn-inflight", str(self.inference.inflight).encode()),
            (b"x-mpfn-queued", str(self.inference.queued).encode()),
        ]

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 0
        body = b""

        async def watching_send(message: Message) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not 200 <= status < 300 and len(body) < LOGGED_BODY_BYTES:
                body += bytes(message.get("body", b""))[: LOGGED_BODY_BYTES - len(body)]
            await send(message)

        try:
            await self._route(scope, receive, watching_send)
        finally:
            if status and not 200 <= status < 300:
                log.warning(
                    "%s %s -> %d: %s", scope["method"], scope["path"], status, _message(body)
                )

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path.startswith(_MODELS):
                self.access.check(header(scope, b"authorization"))
                await self._model_route(scope, receive, send, path[len(_MODELS) :], method)
            elif path.startswith(_REPO_MODELS) or path == "/v2/repository/index":
                guard = self.admin if self.admin.enabled else self.access
                guard.check(header(scope, b"authorization"))
                require_method(method, "POST")
                await self._repository_route(scope, receive, send, path)
            elif path in ("/v2/health/live", "/v2/health/ready"):
                require_method(method, "GET", "HEAD")
                if path.endswith("live") or self.ready:
                    key = "live" if path.endswith("live") else "ready"
                    await self._json(send, 200, {key: True})
                else:
                    await self._json(send, 503, {"ready": False, "error": "worker is starting"})
            elif path in ("/v2", "/v2/"):
                self.access.check(header(scope, b"authorization"))
                require_method(method, "GET")
                await respond(send, 200, self.server_metadata, JSON, self.load_headers())
            elif path == "/metrics":
                require_method(method, "GET")
                await respond(send, 200, self.metrics.render(), METRICS_TYPE.encode())
            else:
                raise WorkerError(f"no route for {method} {path}", 404)
        except ClientDisconnected:
            return
        except Exception as exc:
            status, message, extra = _failure(exc)
            await respond(send, status, error_body(message), JSON, [*self.load_headers(), *extra])

    async def _json(self, send: Send, status: int, doc: Any) -> None:
        await respond(send, status, json_body(doc), JSON, self.load_headers())

    # -- /v2/models/... ------------------------------------------------------------------

    async def _model_route(
        self, scope: Scope, receive: Receive, send: Send, rest: str, method: str
    ) -> None:
        parts = rest.split("/")
        name, version = parts[0], None
        if len(parts) >= 3 and parts[1] == "versions":
            version, tail = parts[2], parts[3:]
        else:
            tail = parts[1:]
        action = tail[0] if len(tail) == 1 else "" if not tail else None
        if action == "infer":
            require_method(method, "POST")
            await self._infer(scope, receive, send, name, version)
        elif action in ("", "ready"):
            require_method(method, "GET", "HEAD")
            if action == "ready":
                await self._model_ready(send, name, version)
            else:
                await self._model_metadata(send, name, version)
        else:
            raise WorkerError(f"no route for {method} {scope['path']}", 404)

    async def _infer(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        started = time.perf_counter()
        label = "" if self.repository.loaded_for(name, version) is None else name
        extra = self.load_headers
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
            request = parse_infer_request(body, header(scope, b"inference-header-content-length"))
            model, cold = await self.model_for(name, version)
            label = name  # never a label for unknown names
            wanted, ran = await self.run_request(model, request)
            payload, header_length = encode_infer_response(
                name,
                model.doc.version,
                [
                    OutputTensor(o.name, a, o.binary)
                    for o, a in zip(wanted, ran.arrays, strict=True)
                ],
                request_id=request.id,
            )
        except ClientDisconnected:
            self.metrics.observe_request(label, 499, time.perf_counter() - started)
            return
        except Exception as exc:
            status, message, more = _failure(exc)
            self.metrics.observe_request(label, status, time.perf_counter() - started)
            await respond(send, status, error_body(message), JSON, [*extra(), *more])
            return
        headers = extra()
        headers.append((b"x-mpfn-batch-size", str(ran.batch_size).encode()))
        if cold:
            headers.append((b"x-mpfn-load-ms", f"{model.load_ms:.1f}".encode()))
        if header_length is None:
            content_type = JSON
        else:
            content_type = OCTETS
            headers.append((b"inference-header-content-length", str(header_length).encode()))
        self.metrics.observe_request(label, 200, time.perf_counter() - started)
        await respond(send, 200, payload, content_type, headers)

    async def model_for(self, name: str, version: str | None) -> tuple[LoadedModel, bool]:
        """The model serving (name, version), pinned for one `infer` (which unpins it),
        loaded first when it is not resident: (model, whether this call loaded it)."""
        resident = self.repository.loaded_for(name, version)
        if resident is not None:
            return self.repository.pin(resident), False
        return await self.repository.acquire(name, version)

    async def infer(
        self, model: LoadedModel, request: InferRequest
    ) -> tuple[list[RequestedOutput], list[npt.NDArray[Any]]]:
        """The inference entry point of every protocol (REST, gRPC): check `request`
        against the pinned `model` and run it within the admission limit; unpins `model`.
        Returns the outputs to send and their arrays."""
        wanted, ran = await self.run_request(model, request)
        return wanted, ran.arrays

    async def run_request(
        self, model: LoadedModel, request: InferRequest
    ) -> tuple[list[RequestedOutput], Ran]:
        """`infer`, also saying how many rows ran together (`Ran.batch_size`): validated
        first, then alone or batched with other requests (`batcher.Inference`)."""
        try:
            feed = validate_inputs(request, model.inputs)
            wanted = select_outputs(request, model.output_names)
            ran = await self.inference.run(model, feed, [o.name for o in wanted])
        finally:
            model.inflight -= 1
        return wanted, ran

    async def _model_ready(self, send: Send, name: str, version: str | None) -> None:
        if self.repository.loaded_for(name, version) is not None:
            await self._json(send, 200, {"name": name, "ready": True})
            return
        doc = await self.repository.document(name, version)  # 404 when unknown
        raise WorkerError(f"model '{name}' version '{doc.version}' is not loaded", 400)

    async def _model_metadata(self, send: Send, name: str, version: str | None) -> None:
        doc = await self.repository.document(name, version)
        loaded = self.repository.loaded_for(name, doc.version)
        inputs = loaded.inputs if loaded else doc.inputs
        outputs = loaded.outputs if loaded else doc.outputs
        if version is None:
            versions = set(await self.repository.versions(name))
            versions.update(
                m.doc.version for m in self.repository.loaded.values() if m.doc.name == name
            )
        else:
            versions = {doc.version}
        await self._json(
            send,
            200,
            {
                "name": name,
                "versions": sorted(versions),
                "platform": PLATFORM,
                "inputs": [tensor_spec(s) for s in inputs],
                "outputs": [tensor_spec(s) for s in outputs],
            },
        )

    # -- /v2/repository/... --------------------------------------------------------------

    async def _repository_route(
        self, scope: Scope, receive: Receive, send: Send, path: str
    ) -> None:
        body = await read_body(scope, receive, self.max_body_bytes)
        doc = optional_json(body)
        if path == "/v2/repository/index":
            rows = await self.repository.index()
            if doc.get("ready") is True:
                rows = [row for row in rows if row["state"] == "READY"]
            await self._json(send, 200, rows)
            return
        name, _, action = path[len(_REPO_MODELS) :].partition("/")
        params = doc.get("parameters") or {}
        version = params.get("version") if isinstance(params, dict) else None
        if version is not None and not isinstance(version, str):
            raise WorkerError("parameters.version must be a string", 400)
        if action == "load":
            before = self.repository.loaded_for(name, version)
            model = await self.repository.load(name, version)
            headers = self.load_headers()
            if before is None:
                headers.append((b"x-mpfn-load-ms", f"{model.load_ms:.1f}".encode()))
            result = {
                "name": name,
                "version": model.doc.version,
                "load_ms": round(model.load_ms, 3),
                "providers": model.providers,
            }
            await respond(send, 200, json_body(result), JSON, headers)
        elif action == "unload":
            unloaded = self.repository.unload(name, version)
            if not unloaded:
                await self.repository.document(name, version)  # 404 when unknown
            await self._json(send, 200, {"name": name, "unloaded": unloaded})
        else:
            raise WorkerError(f"no route for POST {path}", 404)

    # -- lifespan ------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for name, version in self.preload:
                        model = await self.repository.load(name, version)
                        log.info("preloaded %s", model.key)
                except Exception as exc:
                    _, text, _ = _failure(exc)
                    await send({"type": "lifespan.startup.failed", "message": text})
                    return
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                await asyncio.to_thread(self.executor.shutdown, wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _failure(exc: BaseException) -> tuple[int, str, list[tuple[bytes, bytes]]]:
    """Map any exception to (status, message, extra headers); the one place errors become HTTP."""
    if isinstance(exc, ProtocolError):
        return exc.status, exc.message, []
    if isinstance(exc, QueueFull):
        return 503, "queue full", [(b"retry-after", b"1")]
    if isinstance(exc, ModelNotFound):
        return 404, exc.message, []
    if isinstance(exc, Unauthorized):
        return 401, exc.message, [CHALLENGE]
    if isinstance(exc, WorkerError):  # Retry-After only marks backpressure (queue full)
        return exc.status, exc.message, []
    if isinstance(exc, InvalidArgument):
        return 400, f"the model rejected the input: {exc}", []
    log.error("unexpected error", exc_info=exc)
    return 500, f"internal error: {type(exc).__name__}: {exc}", []


def _message(body: bytes) -> str:
    """The `error` of a JSON error body, else the body's start, as one printable line."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    text = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(text, str):
        text = body.decode("utf-8", "replace") or "(no body)"
    clean = "".join(c if " " <= c <= "~" or c > "\x7f" else " " for c in text)
    return clean[:500]
