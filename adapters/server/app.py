"""The adapter server's ASGI application: mpfn's pool protocol in front of any `Adapter`.

It speaks what the router expects of a pool endpoint — the same Open Inference Protocol v2
REST API as mpfn's ORT worker: health, server and model metadata, model ready, infer (JSON
and binary tensors both ways), the model-repository extension (index, load, unload; behind
the admin token when one is configured), the `x-mpfn-inflight`, `x-mpfn-queued` and
`x-mpfn-load-ms` answer headers and the worker's Prometheus series at `/metrics`
(`mpfn.adapters.poolmetrics`) — and delegates every call to one adapter instance, which
translates it to its backend's native API (TF Serving's REST predict, TorchServe, ...).

A plain ASGI callable, like the worker: the infer path is one body read, the v2 codec, a
document lookup (cached), an admission slot and the adapter call. A model the backend does
not hold is loaded on first use (`load_on_demand`), once however many requests miss it.
Errors become JSON `{"error": ...}` answers in one place (`mpfn.adapters.server.errors`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import metadata
from typing import Any

from mpfn.adapters.base import Adapter, AdapterError, LoadResult
from mpfn.adapters.ort_worker.admission import Admission
from mpfn.adapters.ort_worker.errors import ClientDisconnected, WorkerError
from mpfn.adapters.ort_worker.guard import AccessGuard, AdminGuard
from mpfn.adapters.ort_worker.http import (
    JSON,
    OCTETS,
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
from mpfn.adapters.poolmetrics import CONTENT_TYPE as METRICS_TYPE
from mpfn.adapters.poolmetrics import PoolMetrics
from mpfn.adapters.server.catalog import ModelCatalog
from mpfn.adapters.server.errors import Headers, failure
from mpfn.documents import ModelVersion
from mpfn.protocol import (
    InferRequest,
    InferResponse,
    OutputTensor,
    encode_infer_response,
    parse_infer_request,
    select_outputs,
    validate_inputs,
)

log = logging.getLogger("mpfn.adapter_server")

SERVER_NAME = "mpfn-adapter-server"
EXTENSIONS = ["binary_tensor_data", "model_repository"]
# What `/v2/models/{m}` reports as `platform` for the built-in kinds (Triton's names).
PLATFORMS = {
    "tfserving": "tensorflow_savedmodel",
    "torchserve": "pytorch_torchserve",
    "triton": "triton",
    "ort": "onnxruntime_onnx",
}
_MODELS = "/v2/models/"
_REPO_MODELS = "/v2/repository/models/"


def _version() -> str:
    try:
        return metadata.version("mpfn")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout only
        return "0"


class AdapterServer:
    """ASGI callable serving one backend through `adapter`, with bounded concurrency."""

    def __init__(
        self,
        adapter: Adapter,
        catalog: ModelCatalog,
        *,
        max_concurrency: int = 16,
        max_queue: int = 64,
        max_body_bytes: int = 64 * 1024 * 1024,
        admin: AdminGuard | None = None,
        access: AccessGuard | None = None,
        load_on_demand: bool = True,
    ) -> None:
        self.adapter = adapter
        self.catalog = catalog
        self.admin = admin or AdminGuard(None)
        self.access = access or AccessGuard(None)
        self.admission = Admission(max_concurrency, max_queue)
        self.metrics = PoolMetrics()
        self.metrics.bind_admission(lambda: self.admission.running, lambda: self.admission.queued)
        self.max_body_bytes = max_body_bytes
        self.load_on_demand = load_on_demand
        self.platform = PLATFORMS.get(adapter.kind, adapter.kind)
        self.started = False
        self._loading: dict[str, asyncio.Lock] = {}
        self.server_metadata = json_body(
            {
                "name": SERVER_NAME,
                "version": _version(),
                "extensions": EXTENSIONS,
                "adapter": adapter.kind,
            }
        )

    # -- ASGI entry ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    def load_headers(self) -> Headers:
        return [
            (b"x-mpfn-inflight", str(self.admission.running).encode()),
            (b"x-mpfn-queued", str(self.admission.queued).encode()),
        ]

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
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
            elif path == "/v2/health/live":
                require_method(method, "GET", "HEAD")
                await self._json(send, 200, {"live": True})
            elif path == "/v2/health/ready":
                require_method(method, "GET", "HEAD")
                if self.started and await self.adapter.ready():
                    await self._json(send, 200, {"ready": True})
                else:
                    await self._json(send, 503, {"ready": False, "error": "backend not ready"})
            elif path in ("/v2", "/v2/"):
                self.access.check(header(scope, b"authorization"))
                require_method(method, "GET")
                await respond(send, 200, self.server_metadata, JSON, self.load_headers())
            elif path == "/metrics":
                require_method(method, "GET")
                await self._metrics(send)
            else:
                raise WorkerError(f"no route for {method} {path}", 404)
        except ClientDisconnected:
            return
        except Exception as exc:
            await self._error(send, exc)

    async def _error(self, send: Send, exc: Exception) -> int:
        """Answer `exc` as a JSON error; its status."""
        status, message, extra = failure(exc)
        await respond(send, status, error_body(message), JSON, [*self.load_headers(), *extra])
        return status

    async def _metrics(self, send: Send) -> None:
        """The Prometheus exposition; the loaded-models gauge is asked of the backend now
        (it keeps its last value when the backend does not answer)."""
        try:
            self.metrics.loaded_models.set(len(await self.adapter.loaded()))
        except AdapterError as exc:
            log.debug("loaded models unknown: %s", exc.message)
        await respond(send, 200, self.metrics.render(), METRICS_TYPE.encode())

    async def _json(self, send: Send, status: int, doc: Any, extra: Headers | None = None) -> None:
        await respond(send, status, json_body(doc), JSON, [*self.load_headers(), *(extra or [])])

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
            doc = await self.catalog.get(name, version)
            if action == "ready":
                await self._model_ready(send, doc)
            else:
                await self._model_metadata(send, doc, version is None)
        else:
            raise WorkerError(f"no route for {method} {scope['path']}", 404)

    async def _infer(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        """Answer one inference and count it: under the model's name once the registry or
        the backend knows the model, else under `model=""`."""
        started = time.perf_counter()
        label = ""
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
            request = parse_infer_request(body, header(scope, b"inference-header-content-length"))
            doc = await self.catalog.get(name, version)
            label = self._known(doc)
            payload, content_type, headers = await self._answer(doc, request)
            label = doc.name
        except ClientDisconnected:
            self.metrics.observe_request(label, 499, time.perf_counter() - started)
            raise
        except Exception as exc:
            status = await self._error(send, exc)
            self.metrics.observe_request(label, status, time.perf_counter() - started)
            return
        self.metrics.observe_request(label, 200, time.perf_counter() - started)
        await respond(send, 200, payload, content_type, headers)

    def _known(self, doc: ModelVersion) -> str:
        """`doc`'s name when the registry holds it, else "" (without a registry any name
        resolves, and a client must not grow the metrics' label set)."""
        return doc.name if self.catalog.registry is not None else ""

    async def _answer(
        self, doc: ModelVersion, request: InferRequest
    ) -> tuple[bytes, bytes, Headers]:
        """Run `request` on `doc` (loading it first if the backend does not hold it); the
        answer's body, content type and headers."""
        if doc.inputs:  # a bad request never reaches the backend
            validate_inputs(request, doc.inputs)
        if doc.outputs:
            select_outputs(request, [spec.name for spec in doc.outputs])
        load_ms: float | None = None
        try:
            response = await self._run(doc, request)
        except AdapterError as exc:
            if not (self.load_on_demand and exc.status == 404):
                raise
            load_ms = await self._load_once(doc)  # the backend does not hold it: load, retry
            response = await self._run(doc, request)
        payload, header_length = encode_infer_response(
            doc.name, doc.version, _outputs(request, response), request_id=request.id
        )
        headers = self.load_headers()
        if load_ms is not None:
            headers.append((b"x-mpfn-load-ms", f"{load_ms:.1f}".encode()))
        if header_length is None:
            return payload, JSON, headers
        headers.append((b"inference-header-content-length", str(header_length).encode()))
        return payload, OCTETS, headers

    async def _run(self, doc: ModelVersion, request: InferRequest) -> InferResponse:
        async with self.admission.slot():
            return await self.adapter.infer(doc, request)

    async def _load_once(self, doc: ModelVersion) -> float | None:
        """Load `doc` unless a concurrent request did already; its load time, else None."""
        lock = self._loading.setdefault(doc.key, asyncio.Lock())
        async with lock:
            if await self.adapter.ready(doc):
                return None
            return (await self._load(doc)).load_ms

    async def _load(self, doc: ModelVersion, *, counted: bool = True) -> LoadResult:
        """`adapter.load`, recorded in the load metrics unless not `counted` (the model
        was loaded already)."""
        try:
            result = await self.adapter.load(doc)
        except Exception:
            self.metrics.observe_load(self._known(doc), None)
            raise
        if counted:
            self.metrics.observe_load(doc.name, result.load_ms / 1000)
        return result

    async def _model_ready(self, send: Send, doc: ModelVersion) -> None:
        if await self.adapter.ready(doc):
            await self._json(send, 200, {"name": doc.name, "ready": True})
        elif not await self.adapter.ready():
            raise WorkerError(f"the {self.adapter.kind} backend is not reachable", 503)
        else:
            raise WorkerError(f"model '{doc.name}' version '{doc.version}' is not loaded", 400)

    async def _model_metadata(self, send: Send, doc: ModelVersion, all_versions: bool) -> None:
        versions = await self.catalog.versions(doc.name) if all_versions else []
        await self._json(
            send,
            200,
            {
                "name": doc.name,
                "versions": sorted(set(versions) | {doc.version}),
                "platform": self.platform,
                "inputs": [tensor_spec(s) for s in doc.inputs],
                "outputs": [tensor_spec(s) for s in doc.outputs],
            },
        )

    # -- /v2/repository/... --------------------------------------------------------------

    async def _repository_route(
        self, scope: Scope, receive: Receive, send: Send, path: str
    ) -> None:
        body = await read_body(scope, receive, self.max_body_bytes)
        doc = optional_json(body)
        if path == "/v2/repository/index":
            await self._json(send, 200, await self._index(ready_only=doc.get("ready") is True))
            return
        name, _, action = path[len(_REPO_MODELS) :].partition("/")
        params = doc.get("parameters") or {}
        version = params.get("version") if isinstance(params, dict) else None
        if version is not None and not isinstance(version, str):
            raise WorkerError("parameters.version must be a string", 400)
        if action not in ("load", "unload"):
            raise WorkerError(f"no route for POST {path}", 404)
        model = await self.catalog.get(name, version)
        before = await self.adapter.ready(model)
        if action == "load":
            result = await self._load(model, counted=not before)
            extra = [] if before else [(b"x-mpfn-load-ms", f"{result.load_ms:.1f}".encode())]
            loaded = {"name": name, "version": model.version, "load_ms": round(result.load_ms, 3)}
            await self._json(send, 200, loaded, extra)
        else:
            await self.adapter.unload(model)
            answer = {"name": name, "version": model.version, "unloaded": before}
            await self._json(send, 200, answer)

    async def _index(self, *, ready_only: bool) -> list[dict[str, Any]]:
        """Registered versions and what the backend holds (`name:version`, or `name`)."""
        loaded = set(await self.adapter.loaded())
        found = {(m.name, m.version) for m in await self.catalog.all()}
        for entry in loaded:
            name, _, version = entry.partition(":")
            found.add((name, version))
        rows: list[dict[str, Any]] = []
        for name, version in sorted(found):
            ready = f"{name}:{version}" in loaded or (not version and name in loaded)
            if ready_only and not ready:
                continue
            rows.append(
                {
                    "name": name,
                    "version": version,
                    "state": "READY" if ready else "UNAVAILABLE",
                    "reason": "" if ready else "unloaded",
                }
            )
        return rows

    # -- lifespan ------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.started = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.started = False
                await self.adapter.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _outputs(request: InferRequest, response: InferResponse) -> list[OutputTensor]:
    """The response's outputs, each binary or JSON as the request asked."""
    wanted = {o.name: o.binary for o in request.outputs} if request.outputs else {}
    return [
        OutputTensor(
            name,
            array,
            wanted.get(name, request.binary_output),
            response.datatypes.get(name),
        )
        for name, array in response.outputs.items()
    ]
