"""The `tfserving` adapter: TensorFlow Serving's REST API, model control through gRPC reload.

Inference is `POST /v1/models/{m}/versions/{v}:predict` in columnar (`inputs`, the default)
or row (`instances`) format (`options["format"]`); status is `GET /v1/models/{m}[/versions/
{v}]` and metadata `GET .../metadata`. TF Serving can only load and unload by replacing its
whole model config list (`ModelService.HandleReloadConfigRequest`, gRPC), so this adapter
keeps the list it has sent — `options["model_config_list"]` plus what it loaded — and must
be the only writer of that server's config. Versions are TF's integers.

Options: `format` (`columnar`|`row`), `signature_name`, `base_path` (template with `{name}`,
default `/models/{name}`), `model_platform` (default `tensorflow`), `model_config_list`
(models the server already serves: `[{"name", "base_path", "versions": [...]}]`),
`grpc_target` (default: the endpoint's host, port 8500), `grpc_secure`.

With `AdapterConfig.state_dir` the list is kept in `tfserving-models.json` there, written
after every reload the server accepted and read back on start, so a restarted adapter
goes on from what the server was last told rather than dropping models it loaded.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from mpfn.adapters.base import AdapterConfig, AdapterError, AdapterStats, LoadResult
from mpfn.adapters.httpbackend import (
    Measured,
    backend_error,
    bearer_headers,
    json_body,
    model_id,
    send,
)
from mpfn.adapters.tfserving.codec import (
    TF_TO_V2,
    TensorJSONError,
    loads,
    predict_body,
    predict_outputs,
)
from mpfn.adapters.tfserving.kept import CONFIG_FILE, parse_configs, read_configs, write_configs
from mpfn.adapters.tfserving.reload import (
    CODE_NAMES,
    GrpcReload,
    ModelConfigSpec,
    ReloadTransport,
    http_status,
)
from mpfn.documents import ModelVersion
from mpfn.protocol import InferRequest, InferResponse, datatype_of

GRPC_PORT = 8500
_POLL_S = (0.01, 0.02, 0.05, 0.1, 0.2)


@dataclass(frozen=True, slots=True)
class VersionState:
    """One entry of TF Serving's `model_version_status`."""

    state: str  # UNKNOWN, START, LOADING, AVAILABLE, UNLOADING, END
    code: str = "OK"
    message: str = ""

    @property
    def available(self) -> bool:
        return self.state == "AVAILABLE"

    @property
    def failed(self) -> bool:
        return self.state == "END" and self.code != "OK"


def tf_version(model: ModelVersion) -> int:
    """TF Serving versions are integers; others cannot exist there (400)."""
    if not model.version.isdigit():
        raise AdapterError(
            400, f"tfserving versions are integers; '{model.version}' of '{model.name}' is not"
        )
    return int(model.version)


class TFServingAdapter:
    kind: ClassVar[str] = "tfserving"

    def __init__(
        self,
        config: AdapterConfig,
        *,
        client: httpx.AsyncClient | None = None,
        reload: ReloadTransport | None = None,
    ) -> None:
        options = config.options
        if options.get("format", "columnar") not in ("columnar", "row"):
            raise ValueError("tfserving option 'format' must be 'columnar' or 'row'")
        self.config = config
        self.base = str(config.pool.endpoint).rstrip("/")
        self.row = options.get("format") == "row"
        self.signature: str | None = options.get("signature_name")
        self.base_path: str = options.get("base_path", "/models/{name}")
        self.platform: str = options.get("model_platform", "tensorflow")
        self.config_file = config.state_dir / CONFIG_FILE if config.state_dir else None
        initial = parse_configs(options.get("model_config_list", ()))
        kept = read_configs(self.config_file) if self.config_file else None
        self.served: dict[str, ModelConfigSpec] = {
            spec.name: spec for spec in (initial if kept is None else kept)
        }
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(timeout=config.timeout_s)
        self.headers = bearer_headers(config.credentials)
        self._reload = reload
        self._lock = asyncio.Lock()
        self._outputs: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.measured = Measured()

    @property
    def reload_transport(self) -> ReloadTransport:
        if self._reload is None:
            self._reload = GrpcReload(
                self.grpc_target(),
                timeout_s=self.config.timeout_s,
                secure=bool(self.config.options.get("grpc_secure", False)),
                token=self.config.credentials.get("token", ""),
            )
        return self._reload

    def grpc_target(self) -> str:
        target = self.config.options.get("grpc_target") or self.config.management_url
        if target:
            return str(target).removeprefix("grpc://").removeprefix("grpcs://")
        host = urlsplit(self.base).hostname or "127.0.0.1"
        return f"{host}:{GRPC_PORT}"

    # -- inference -----------------------------------------------------------------------

    async def infer(self, model: ModelVersion, request: InferRequest) -> InferResponse:
        version = tf_version(model)
        inputs = {t.name: (t.datatype, t.array) for t in request.inputs}
        try:
            body = predict_body(inputs, row=self.row, signature=self.signature)
        except TensorJSONError as exc:
            raise AdapterError(400, str(exc)) from None
        url = f"{self.base}/v1/models/{model.name}/versions/{version}:predict"
        headers = {**self.headers, "content-type": "application/json"}
        with self.measured.track(model_id(model)):
            response = await send(
                self.client, self.kind, "POST", url, content=body, headers=headers
            )
            if response.status_code != 200:
                raise backend_error(self.kind, response)
            names, datatypes = await self._output_specs(model)
            try:
                arrays = predict_outputs(
                    loads(response.content), row=self.row, names=names, datatypes=datatypes
                )
            except (TensorJSONError, ValueError) as exc:
                raise AdapterError(
                    502, f"tfserving backend sent an invalid response: {exc}"
                ) from None
        arrays = _select(arrays, request)
        return InferResponse(
            model_name=model.name,
            model_version=model.version,
            outputs=arrays,
            datatypes={name: datatypes.get(name) or datatype_of(a) for name, a in arrays.items()},
            id=request.id,
        )

    async def _output_specs(self, model: ModelVersion) -> tuple[list[str], dict[str, str]]:
        """Output names and datatypes: from the model document, else the server's metadata."""
        if model.outputs:
            return [s.name for s in model.outputs], {s.name: s.datatype for s in model.outputs}
        key = model_id(model)
        if key not in self._outputs:
            signature = (await self.metadata(model))["signature"].get("outputs", {})
            self._outputs[key] = (
                list(signature),
                {n: TF_TO_V2.get(v.get("dtype", ""), "") for n, v in signature.items()},
            )
        return self._outputs[key]

    # -- status and metadata (REST) ------------------------------------------------------

    async def status(self, model: ModelVersion | str) -> dict[str, VersionState]:
        """Every version TF Serving tracks for a model; {} when it does not know the model."""
        name = model if isinstance(model, str) else model.name
        response = await send(
            self.client, self.kind, "GET", f"{self.base}/v1/models/{name}", headers=self.headers
        )
        if response.status_code == 404:
            return {}
        if response.status_code != 200:
            raise backend_error(self.kind, response)
        doc = json_body(self.kind, response)
        entries = doc.get("model_version_status") if isinstance(doc, dict) else None
        out: dict[str, VersionState] = {}
        for entry in entries if isinstance(entries, list) else []:
            status = entry.get("status") or {}
            code = status.get("error_code", "OK")
            out[str(entry.get("version"))] = VersionState(
                state=str(entry.get("state", "UNKNOWN")),
                code=CODE_NAMES.get(code, str(code)) if isinstance(code, int) else str(code),
                message=str(status.get("error_message", "")),
            )
        return out

    async def metadata(self, model: ModelVersion) -> dict[str, Any]:
        """`{"model_spec": ..., "signature": {inputs, outputs, method_name}}` of a version."""
        url = f"{self.base}/v1/models/{model.name}/versions/{tf_version(model)}/metadata"
        response = await send(self.client, self.kind, "GET", url, headers=self.headers)
        if response.status_code != 200:
            raise backend_error(self.kind, response)
        doc = json_body(self.kind, response)
        try:
            signatures = doc["metadata"]["signature_def"]["signature_def"]
            signature = signatures[self.signature or "serving_default"]
        except (KeyError, TypeError):
            raise AdapterError(502, "tfserving metadata has no such serving signature") from None
        return {"model_spec": doc.get("model_spec", {}), "signature": signature}

    async def ready(self, model: ModelVersion | None = None) -> bool:
        """Server: its REST API answers (TF Serving has no health route). Model: AVAILABLE."""
        try:
            if model is None:
                response = await send(
                    self.client, self.kind, "GET", f"{self.base}/v1/models", headers=self.headers
                )
                return response.status_code < 500 and _is_json(response)
            if not model.version.isdigit():
                return False
            state = (await self.status(model)).get(model.version)
            return state is not None and state.available
        except AdapterError:
            return False

    async def loaded(self) -> list[str]:
        """`name:version` of every AVAILABLE version of the models in this adapter's config."""
        out: list[str] = []
        for name in self.served:
            out.extend(f"{name}:{v}" for v, s in (await self.status(name)).items() if s.available)
        return sorted(out)

    # -- model control (gRPC reload) -----------------------------------------------------

    async def load(self, model: ModelVersion) -> LoadResult:
        version = tf_version(model)
        started = time.perf_counter()
        async with self._lock:
            current = self.served.get(model.name) or ModelConfigSpec(
                model.name, self.base_path.format(name=model.name), self.platform
            )
            wanted = replace(current, versions=tuple(sorted({*current.versions, version})))
            await self._apply({**self.served, model.name: wanted})
        await self._wait(model, available=True)
        load_ms = (time.perf_counter() - started) * 1000
        self.measured.load_ms[model_id(model)] = load_ms
        return LoadResult(model.name, model.version, load_ms)

    async def unload(self, model: ModelVersion) -> None:
        version = tf_version(model)
        async with self._lock:
            current = self.served.get(model.name)
            if current is None:
                return
            versions = tuple(v for v in current.versions if v != version)
            configs = dict(self.served)
            if versions:
                configs[model.name] = replace(current, versions=versions)
            else:
                del configs[model.name]
            await self._apply(configs)
        await self._wait(model, available=False)

    async def _apply(self, configs: Mapping[str, ModelConfigSpec]) -> None:
        """Send the whole list; remember it only when the server accepted it."""
        await self.reload_transport.reload(list(configs.values()))
        self.served = dict(configs)
        if self.config_file is not None:
            await asyncio.to_thread(write_configs, self.config_file, list(configs.values()))

    async def _wait(self, model: ModelVersion, *, available: bool) -> None:
        """Poll model status until the version is (or is no longer) AVAILABLE."""
        deadline = time.monotonic() + self.config.timeout_s
        for attempt in itertools.count():
            state = (await self.status(model)).get(model.version)
            if (state is not None and state.available) == available:
                return
            if available and state is not None and state.failed:
                raise AdapterError(
                    http_status(state.code),
                    f"tfserving could not load {model_id(model)}: {state.code}: {state.message}",
                )
            if time.monotonic() > deadline:
                what = "become available" if available else "unload"
                raise AdapterError(504, f"tfserving: {model_id(model)} did not {what} in time")
            await asyncio.sleep(_POLL_S[min(attempt, len(_POLL_S) - 1)])

    # -- feedback ------------------------------------------------------------------------

    async def stats(self) -> AdapterStats:
        return self.measured.stats(tuple(await self.loaded()))

    async def aclose(self) -> None:
        if self._reload is not None:
            await self._reload.aclose()
        if self._owns_client:
            await self.client.aclose()


def _select(arrays: dict[str, Any], request: InferRequest) -> dict[str, Any]:
    """Only the outputs the request asked for (TF's REST predict returns all of them)."""
    if request.outputs is None:
        return arrays
    missing = [o.name for o in request.outputs if o.name not in arrays]
    if missing:
        raise AdapterError(
            400, f"unknown output '{missing[0]}' (model outputs: {', '.join(arrays)})"
        )
    return {o.name: arrays[o.name] for o in request.outputs}


def _is_json(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/json")
