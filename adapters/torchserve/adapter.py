"""The `torchserve` adapter: PyTorch TorchServe's inference, management and metrics APIs.

`load` builds a `.mar` from the model's artifact with torch-model-archiver
(`torchserve_archive`; the archive's handler runs ONNX models with onnxruntime and
TorchScript models with torch), places it in the model store the server reads, and
registers it through the management API with `synchronous=true`; `unload` unregisters
that version; `scale` sets its worker count. Inference posts Open Inference Protocol v2
bodies with binary tensors to `/predictions/{name}/{version}`, or, with
`options["protocol"] = "v2"`, JSON bodies to TorchServe's `/v2/models/{name}/infer`
(which serves the model's default version only). Feedback comes from describe-model
(workers, queue) and the `ts_*` Prometheus metrics.

Options: `model_store` (directory the adapter writes archives into; required to upload),
`mar_url` (base URL TorchServe fetches those archives from; default: register by file name,
i.e. `model_store` is the server's own model store), `workers`, `batch_size`,
`max_batch_delay_ms`, `response_timeout_s`, `protocol`, `metrics_url` (default: the
management host on port 8082). Credentials: `management_key` and `inference_key`, sent as
bearer tokens, as TorchServe's token authorization expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mpfn.adapters.base import AdapterConfig, AdapterError, AdapterStats, LoadResult
from mpfn.adapters.httpbackend import (
    Measured,
    backend_error,
    error_text,
    json_body,
    model_id,
    one_line,
    send,
)
from mpfn.adapters.ort import encode_binary_request
from mpfn.adapters.torchserve.archive import ArchiveError, UnsupportedModel, build_mar, mar_name
from mpfn.artifacts import ArtifactError
from mpfn.documents import ModelVersion
from mpfn.protocol import (
    HEADER_LENGTH,
    InferRequest,
    InferResponse,
    ProtocolError,
    decode_infer_response,
    encode_infer_request,
)

DEFAULT_METRICS_PORT = 8082


class TorchServeAdapter:
    """One TorchServe (a pool). `management_url` defaults to the endpoint's host on :8081."""

    kind: ClassVar[str] = "torchserve"

    def __init__(self, config: AdapterConfig, *, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        options = config.options
        self.base = str(config.pool.endpoint).rstrip("/")
        self.management = (config.management_url or _with_port(self.base, 8081)).rstrip("/")
        self.metrics_url = str(
            options.get("metrics_url") or _with_port(self.management, DEFAULT_METRICS_PORT)
        )
        if not self.metrics_url.endswith("/metrics"):
            self.metrics_url = self.metrics_url.rstrip("/") + "/metrics"
        store = options.get("model_store")
        self.model_store = Path(store) if store else None
        self.mar_url = str(options["mar_url"]).rstrip("/") if options.get("mar_url") else None
        self.workers = int(options.get("workers", 1))
        self.batch_size = int(options.get("batch_size", 1))
        self.max_batch_delay_ms = int(options.get("max_batch_delay_ms", 5))
        self.response_timeout_s = int(options.get("response_timeout_s", 60))
        protocol = options.get("protocol", "predictions")
        if protocol not in ("predictions", "v2"):
            raise ValueError(f"torchserve: unknown protocol option {protocol!r}")
        self.protocol = protocol
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(timeout=config.timeout_s)
        self.inference_headers = _bearer(config.credentials.get("inference_key"))
        self.management_headers = _bearer(config.credentials.get("management_key"))
        self.measured = Measured()

    # -- inference -----------------------------------------------------------------------

    async def infer(self, model: ModelVersion, request: InferRequest) -> InferResponse:
        headers = dict(self.inference_headers)
        if self.protocol == "v2":
            url = f"{self.base}/v2/models/{model.name}/infer"
            body, _ = encode_infer_request(
                {t.name: t.array for t in request.inputs},
                binary=False,
                datatypes={t.name: t.datatype for t in request.inputs},
                request_id=request.id,
                outputs={o.name: False for o in request.outputs} if request.outputs else None,
            )
            headers["content-type"] = "application/json"
        else:
            url = f"{self.base}/predictions/{model.name}/{model.version}"
            body, header_length = encode_binary_request(request)
            headers[HEADER_LENGTH] = str(header_length)
            headers["content-type"] = "application/octet-stream"
        with self.measured.track(model_id(model)):
            response = await send(
                self.client, self.kind, "POST", url, content=body, headers=headers
            )
            if response.status_code != 200:
                raise torchserve_error(response)
            try:
                return decode_infer_response(response.content, response.headers.get(HEADER_LENGTH))
            except ProtocolError as exc:
                raise AdapterError(
                    502, f"torchserve backend sent an invalid response: {exc}"
                ) from None

    # -- model control (management API) --------------------------------------------------

    async def load(self, model: ModelVersion) -> LoadResult:
        """Register the model's archive with `workers` workers (building it if needed); a
        version already registered is scaled up instead. `load_ms` covers archive building
        and registration, or just the readiness check when the model was ready already."""
        started = time.perf_counter()
        if await self.ready(model):
            elapsed = (time.perf_counter() - started) * 1000
            return LoadResult(model.name, model.version, elapsed)
        archive = await self._archive(model)
        params: dict[str, str | int] = {
            "url": f"{self.mar_url}/{archive}" if self.mar_url else archive,
            "initial_workers": self.workers,
            "batch_size": self.batch_size,
            "max_batch_delay": self.max_batch_delay_ms,
            "response_timeout": self.response_timeout_s,
            "synchronous": "true",
        }
        response = await self._management("POST", "/models", params=params)
        if response.status_code == 409:  # registered, but without ready workers
            await self.scale(model, self.workers)
        elif response.status_code != 200:
            error = self._load_error(model, response)
            if error.status >= 500:  # don't leave a failing version retrying its workers
                with contextlib.suppress(AdapterError):
                    await self._management("DELETE", f"/models/{model.name}/{model.version}")
            raise error
        elapsed = (time.perf_counter() - started) * 1000
        self.measured.load_ms[model_id(model)] = elapsed
        return LoadResult(model.name, model.version, elapsed)

    async def _archive(self, model: ModelVersion) -> str:
        """The archive's file name, built into the model store from the artifact if needed."""
        if model.artifact is None:  # an archive the operator put in the model store
            return mar_name(model)
        source = self.config.artifacts
        if source is None or self.model_store is None:
            raise AdapterError(
                500,
                "torchserve adapter: uploading a model needs AdapterConfig.artifacts and "
                "options['model_store']",
            )
        try:
            artifact = await asyncio.to_thread(source, model.artifact)
            return (await build_mar(model, artifact, self.model_store)).name
        except UnsupportedModel as exc:
            raise AdapterError(400, one_line(f"torchserve adapter: {exc}")) from None
        except (ArtifactError, ArchiveError, OSError) as exc:  # fetching or archiving failed
            raise AdapterError(
                502, one_line(f"torchserve adapter: artifact of {model_id(model)}: {exc}")
            ) from None

    def _load_error(self, model: ModelVersion, response: httpx.Response) -> AdapterError:
        if response.status_code in (401, 403, 404) or b"InvalidKeyException" in response.content:
            return torchserve_error(response)
        reason = error_text(response.content)
        return AdapterError(
            502, one_line(f"torchserve backend could not load {model_id(model)}: {reason}")
        )

    async def scale(self, model: ModelVersion, workers: int) -> None:
        """Set the number of workers serving `model` (0 keeps it registered but cold)."""
        params: dict[str, str | int] = {
            "min_worker": workers,
            "max_worker": workers,
            "synchronous": "true",
        }
        path = f"/models/{model.name}/{model.version}"
        response = await self._management("PUT", path, params=params)
        if response.status_code not in (200, 202):
            raise torchserve_error(response)
        await self._settle(model, workers)

    async def _settle(self, model: ModelVersion, workers: int) -> None:
        """Wait until exactly `workers` workers serve `model`, all READY. TorchServe's
        synchronous scaling can answer while workers from an earlier scale-down are still
        stopping; bounded by `timeout_s`."""
        deadline = time.monotonic() + self.config.timeout_s
        while True:
            described = await self.describe(model)
            if described is None:
                raise AdapterError(404, f"torchserve backend: model {model_id(model)} is gone")
            current = described.get("workers") or []
            if len(current) == workers and _ready_workers(described) == workers:
                return
            if time.monotonic() > deadline:
                raise AdapterError(
                    504,
                    f"torchserve backend: {model_id(model)} has {_ready_workers(described)} "
                    f"ready workers of {workers} after {self.config.timeout_s:.0f}s",
                )
            await asyncio.sleep(0.05)

    async def unload(self, model: ModelVersion) -> None:
        """Unregister the version; one that is not registered is already unloaded."""
        path = f"/models/{model.name}/{model.version}"
        response = await self._management("DELETE", path)
        if response.status_code not in (200, 404):
            raise torchserve_error(response)

    async def describe(self, model: ModelVersion) -> dict[str, Any] | None:
        """TorchServe's description of the version (workers, queue), or None if unknown."""
        response = await self._management("GET", f"/models/{model.name}/{model.version}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise torchserve_error(response)
        rows = json_body(self.kind, response)
        return rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else None

    async def ready(self, model: ModelVersion | None = None) -> bool:
        try:
            if model is None:
                response = await send(
                    self.client,
                    self.kind,
                    "GET",
                    f"{self.base}/ping",
                    headers=self.inference_headers,
                )
                return response.status_code == 200
            description = await self.describe(model)
        except AdapterError:
            return False
        return description is not None and _ready_workers(description) > 0

    async def loaded(self) -> list[str]:
        """`name:version` of every registered version with at least one ready worker."""
        return sorted(
            f"{row.get('modelName')}:{row.get('modelVersion')}"
            for row in await self._versions()
            if _ready_workers(row) > 0
        )

    async def _versions(self) -> list[dict[str, Any]]:
        names: list[str] = []
        token: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 100}
            if token:
                params["next_page_token"] = token
            response = await self._management("GET", "/models", params=params)
            if response.status_code != 200:
                raise torchserve_error(response)
            doc = json_body(self.kind, response)
            names += [str(m["modelName"]) for m in doc.get("models", []) if "modelName" in m]
            token = doc.get("nextPageToken")
            if not token:
                break
        described = await asyncio.gather(
            *(self._management("GET", f"/models/{n}/all") for n in names)
        )
        rows: list[dict[str, Any]] = []
        for response in described:
            if response.status_code == 200:
                body = json_body(self.kind, response)
                rows += [row for row in body if isinstance(row, dict)]
        return rows

    async def _management(
        self, method: str, path: str, *, params: dict[str, str | int] | None = None
    ) -> httpx.Response:
        return await send(
            self.client,
            self.kind,
            method,
            f"{self.management}{path}",
            params=params,
            headers=self.management_headers,
        )

    # -- feedback ------------------------------------------------------------------------

    async def stats(self) -> AdapterStats:
        """Workers and queues from describe-model, `ts_*` metrics, own measurements."""
        rows = await self._versions()
        response = await send(
            self.client, self.kind, "GET", self.metrics_url, headers=self.management_headers
        )
        if response.status_code != 200:
            raise torchserve_error(response)
        metrics = torchserve_metrics(response.text)
        models = {
            f"{row.get('modelName')}:{row.get('modelVersion')}": {
                "workers": float(len(row.get("workers") or [])),
                "ready_workers": float(_ready_workers(row)),
                "pending": float((row.get("jobQueueStatus") or {}).get("pendingRequests", 0)),
            }
            for row in rows
        }
        loaded = tuple(sorted(key for key, row in models.items() if row["ready_workers"] > 0))
        return self.measured.stats(
            loaded,
            queued=int(sum(row["pending"] for row in models.values())),
            requests=int(metrics["requests"]),
            errors=int(metrics["errors"]),
            extra={
                "models": models,
                "metrics": metrics,
                "adapter_requests": self.measured.requests,
                "adapter_errors": self.measured.errors,
            },
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()


def torchserve_error(response: httpx.Response) -> AdapterError:
    """`backend_error`, except that TorchServe answers a missing, wrong or expired token
    with 400 `InvalidKeyException`: that is the pool's credentials failing (502)."""
    if response.status_code == 400 and b"InvalidKeyException" in response.content:
        reason = error_text(response.content)
        return AdapterError(
            502,
            one_line(f"torchserve backend: the backend rejected the pool's credentials: {reason}"),
        )
    return backend_error("torchserve", response)


def _bearer(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def _ready_workers(description: dict[str, Any]) -> int:
    workers = description.get("workers") or []
    return sum(1 for w in workers if isinstance(w, dict) and w.get("status") == "READY")


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme or 'http'}://{host}:{port}"


def torchserve_metrics(text: str) -> dict[str, float]:
    """Totals of the TorchServe frontend metrics mpfn uses (Prometheus exposition)."""
    wanted = {
        "ts_inference_requests": "requests",
        "Requests5XX": "errors",
        "Requests4XX": "client_errors",
        "ts_inference_latency_microseconds": "inference_us",
        "ts_queue_latency_microseconds": "queue_us",
    }
    out = dict.fromkeys(wanted.values(), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = wanted.get(sample.name.removesuffix("_total"))
            if key is not None:
                out[key] += sample.value
    return out
