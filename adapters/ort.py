"""The `ort` adapter: mpfn's own ONNX Runtime worker (`python -m mpfn.adapters.ort_worker`),
and the client of every server speaking the same pool protocol (adapter servers).

Inference goes over the Open Inference Protocol v2 REST API with binary tensors both ways
(`Inference-Header-Content-Length`), so no tensor is ever turned into JSON numbers.
Load/unload/loaded use the model-repository extension (`/v2/repository/...`), which the
router never exposes; when the worker requires an admin token, these calls send it as
`Authorization: Bearer` (`credentials["admin_token"]`, else `$MPFN_WORKER_ADMIN_TOKEN`).
Stats come from the worker's `x-mpfn-*` answer headers and its Prometheus `/metrics`. The
worker reads model documents from the shared store itself: this adapter never uploads
models and holds no state beyond its own measurements. In front of an adapter server
(`Pool.adapter_server`) its messages name the backend kind the server fronts.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mpfn.adapters.base import AdapterConfig, AdapterError, AdapterStats, LoadResult
from mpfn.adapters.httpbackend import (
    Measured,
    backend_error,
    bearer_headers,
    json_body,
    model_id,
    send,
)
from mpfn.documents import ModelVersion
from mpfn.protocol import (
    HEADER_LENGTH,
    InferRequest,
    InferResponse,
    ProtocolError,
    decode_infer_response,
    dumps,
    tensor_to_bytes,
)

LOAD_MS = "x-mpfn-load-ms"
ADMIN_TOKEN = "admin_token"  # credentials key of the worker's management token
ADMIN_TOKEN_ENV = "MPFN_WORKER_ADMIN_TOKEN"


def encode_binary_request(request: InferRequest) -> tuple[bytes, int]:
    """A v2 body with every input as binary data and every output asked for as binary."""
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in request.inputs:
        blob = tensor_to_bytes(tensor.datatype, tensor.array)
        entries.append(
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": list(tensor.shape),
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    doc: dict[str, Any] = {"inputs": entries}
    if request.id is not None:
        doc["id"] = request.id
    if request.outputs is not None:
        doc["outputs"] = [
            {"name": out.name, "parameters": {"binary_data": True}} for out in request.outputs
        ]
    doc["parameters"] = {**request.parameters, "binary_data_output": True}
    header = dumps(doc)
    return b"".join([header, *blobs]), len(header)


class OrtAdapter:
    """One pool-protocol endpoint: an ORT worker or an adapter server.
    `management_url` defaults to the endpoint."""

    kind: ClassVar[str] = "ort"

    def __init__(self, config: AdapterConfig, *, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.label = config.pool.adapter if config.pool.adapter_server else self.kind
        self.base = str(config.pool.endpoint).rstrip("/")
        self.management = (config.management_url or self.base).rstrip("/")
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(timeout=config.timeout_s)
        self.headers = bearer_headers(config.credentials)
        admin = config.credentials.get(ADMIN_TOKEN) or os.environ.get(ADMIN_TOKEN_ENV, "").strip()
        # Management calls (repository API, /metrics) carry the admin token when there is one.
        self.admin_headers = {"authorization": f"Bearer {admin}"} if admin else self.headers
        self.measured = Measured()
        self.reported: dict[str, int] = {}  # last x-mpfn-inflight / x-mpfn-queued seen

    # -- inference -----------------------------------------------------------------------

    async def infer(self, model: ModelVersion, request: InferRequest) -> InferResponse:
        body, header_length = encode_binary_request(request)
        url = f"{self.base}/v2/models/{model.name}/versions/{model.version}/infer"
        headers = {**self.headers, HEADER_LENGTH: str(header_length)}
        key = model_id(model)
        with self.measured.track(key):
            response = await send(
                self.client, self.label, "POST", url, content=body, headers=headers
            )
            self._note(key, response)
            if response.status_code != 200:
                raise backend_error(self.label, response)
            try:
                return decode_infer_response(response.content, response.headers.get(HEADER_LENGTH))
            except ProtocolError as exc:
                raise AdapterError(
                    502, f"{self.label} backend sent an invalid response: {exc}"
                ) from None

    def _note(self, key: str, response: httpx.Response) -> None:
        """Remember the worker's load report and a cold-start load time, if it sent them."""
        for name in ("x-mpfn-inflight", "x-mpfn-queued"):
            value = _number(response.headers.get(name))
            if value is not None:
                self.reported[name] = int(value)
        load_ms = _number(response.headers.get(LOAD_MS))
        if load_ms is not None:
            self.measured.load_ms[key] = load_ms

    # -- model control (repository extension) --------------------------------------------

    async def load(self, model: ModelVersion) -> LoadResult:
        """Load through the repository API; `load_ms` is the worker's own load time when it
        loaded the model now, else this call's round trip (the model was already loaded)."""
        started = time.perf_counter()
        response = await self._repository(model, "load")
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._note(model_id(model), response)
        fresh = _number(response.headers.get(LOAD_MS))
        return LoadResult(model.name, model.version, elapsed_ms if fresh is None else fresh)

    async def unload(self, model: ModelVersion) -> None:
        await self._repository(model, "unload")

    async def _repository(self, model: ModelVersion, action: str) -> httpx.Response:
        url = f"{self.management}/v2/repository/models/{model.name}/{action}"
        body = {"parameters": {"version": model.version}}
        response = await send(
            self.client, self.label, "POST", url, json=body, headers=self.admin_headers
        )
        if response.status_code != 200:
            raise backend_error(self.label, response)
        return response

    async def ready(self, model: ModelVersion | None = None) -> bool:
        if model is None:
            url = f"{self.base}/v2/health/ready"
        else:
            url = f"{self.base}/v2/models/{model.name}/versions/{model.version}/ready"
        try:
            response = await send(self.client, self.label, "GET", url, headers=self.headers)
        except AdapterError:
            return False
        return response.status_code == 200

    async def loaded(self) -> list[str]:
        url = f"{self.management}/v2/repository/index"
        response = await send(
            self.client, self.label, "POST", url, json={"ready": True}, headers=self.admin_headers
        )
        if response.status_code != 200:
            raise backend_error(self.label, response)
        rows = json_body(self.label, response)
        if not isinstance(rows, list):
            raise AdapterError(
                502, f"{self.label} backend sent a repository index that is not a list"
            )
        return sorted(
            f"{row['name']}:{row['version']}"
            for row in rows
            if isinstance(row, dict) and row.get("state") == "READY"
        )

    # -- feedback ------------------------------------------------------------------------

    async def stats(self) -> AdapterStats:
        """The worker's gauges and counters from `/metrics`, plus this adapter's measurements."""
        response = await send(
            self.client, self.label, "GET", f"{self.management}/metrics", headers=self.admin_headers
        )
        if response.status_code != 200:
            raise backend_error(self.label, response)
        metrics = worker_metrics(response.text)
        loaded = tuple(await self.loaded())
        return self.measured.stats(
            loaded,
            in_flight=int(metrics["inflight"]),
            queued=int(metrics["queued"]),
            requests=int(metrics["requests"]),
            errors=int(metrics["errors"]),
            extra={
                "backend_latency_ms": metrics["latency_ms"],
                "memory_mb": metrics["memory_mb"],
                "reported": dict(self.reported),
                "adapter_requests": self.measured.requests,
                "adapter_errors": self.measured.errors,
            },
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()


def _number(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def worker_metrics(text: str) -> dict[str, Any]:
    """The numbers mpfn uses from a worker's Prometheus exposition."""
    out: dict[str, Any] = {
        "inflight": 0.0,
        "queued": 0.0,
        "memory_mb": 0.0,
        "requests": 0.0,
        "errors": 0.0,
        "latency_ms": {},
    }
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "mpfn_worker_inflight":
                out["inflight"] = value
            elif name == "mpfn_worker_queued":
                out["queued"] = value
            elif name == "mpfn_worker_model_memory_mb":
                out["memory_mb"] = value
            elif name == "mpfn_worker_requests_total":
                out["requests"] += value
                if not labels.get("status", "").startswith("2"):
                    out["errors"] += value
            elif name == "mpfn_worker_request_seconds_sum" and labels.get("model"):
                sums[labels["model"]] = value
            elif name == "mpfn_worker_request_seconds_count" and labels.get("model"):
                counts[labels["model"]] = value
    out["latency_ms"] = {m: sums[m] / n * 1000 for m, n in counts.items() if n and m in sums}
    return out
