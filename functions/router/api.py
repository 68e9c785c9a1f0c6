"""The router's FastAPI app: health, metadata, Triton's model configuration and
statistics extensions, model listings, metrics, the OpenAPI schema and its offline docs.

Answers come from the in-memory registry snapshot only (`/metrics` from the router's own
registry of counters). Requests arrive through the request pipeline (`RouterApp`), which
has already refreshed the snapshot when due and checked the API key; handlers do neither.
The forwarding routes are served by the pipeline itself; the schema describes them too
(`mpfn.functions.router.openapi`). Backend management endpoints such as
`/v2/repository/...` are deliberately absent. Errors on OpenAI paths (`/v1/...`) have
OpenAI's shape, all others `{"error": "..."}` (`mpfn.functions.router.errors`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mpfn.auth import ApiKey, may_use_model
from mpfn.documents import ModelVersion, TensorSpec
from mpfn.functions.router.docs import add_docs
from mpfn.functions.router.errors import error_style, openai_error
from mpfn.functions.router.openapi import ERRORS, forwarded_paths
from mpfn.functions.router.pipeline import API_KEY_STATE, route_path
from mpfn.functions.router.runtime import RouterRuntime
from mpfn.routing.serving import candidates
from mpfn.telemetry.metrics import CONTENT_TYPE

SERVER_NAME = "mpfn-router"
PLATFORMS = {
    "onnx": "onnxruntime_onnx",
    "torchscript": "pytorch_libtorch",
    "pytorch": "pytorch",
    "tensorflow": "tensorflow_savedmodel",
    "gguf": "gguf",
    "openai": "openai",
    "other": "other",
}


# Triton's backend name per model format (its model configuration's `backend`).
BACKENDS = {
    "onnx": "onnxruntime",
    "torchscript": "pytorch",
    "pytorch": "pytorch",
    "tensorflow": "tensorflow",
}
EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics"]
OPENAI_SERVED = "/v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _openai_error(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = {"error": openai_error(status, message, param=param, code=code)}
    return JSONResponse(body, status_code=status)


def _styled_error(request: Request, status: int, message: str) -> JSONResponse:
    """An error in the shape of the request's route (OpenAI's on `/v1/...`)."""
    if error_style(route_path(request.scope)) == "openai":
        return _openai_error(status, message)
    return _error(status, message)


def triton_data_type(datatype: str) -> str:
    """Triton's `data_type` of a v2 datatype (`FP32` -> `TYPE_FP32`, `BYTES` -> `TYPE_STRING`)."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def model_config(mv: ModelVersion) -> dict[str, Any]:
    """Triton's model configuration of a registered model version (no batching: shapes are
    full shapes, -1 for any size)."""
    return {
        "name": mv.name,
        "platform": PLATFORMS.get(mv.format, mv.format),
        "backend": BACKENDS.get(mv.format, ""),
        "version_policy": {"all": {}},
        "max_batch_size": 0,
        "input": [
            {"name": t.name, "data_type": triton_data_type(t.datatype), "dims": t.shape}
            for t in mv.inputs
        ],
        "output": [
            {"name": t.name, "data_type": triton_data_type(t.datatype), "dims": t.shape}
            for t in mv.outputs
        ],
        "parameters": {},
    }


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": spec.shape}


def model_metadata(mv: ModelVersion, versions: list[str]) -> dict[str, Any]:
    """The v2 model metadata object for one registered model version."""
    return {
        "name": mv.name,
        "versions": versions,
        "platform": PLATFORMS.get(mv.format, mv.format),
        "inputs": [_tensor(t) for t in mv.inputs],
        "outputs": [_tensor(t) for t in mv.outputs],
    }


def create_api(runtime: RouterRuntime) -> FastAPI:
    """Build the FastAPI app over `runtime`; requests reach it through `RouterApp`."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="mpfn router",
        version="0.1.0",
        lifespan=lifespan,
        responses=ERRORS,
        docs_url=None,
        redoc_url=None,
    )
    add_docs(app)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        path = route_path(request.scope)
        if exc.status_code == 404 and error_style(path) == "openai":
            message = f"Invalid URL ({request.method} {path}): this router serves {OPENAI_SERVED}"
        response = _styled_error(request, exc.status_code, message)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            ".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors()
        )
        return _styled_error(request, 400, problems or "invalid request")

    @app.get("/v2/health/live", tags=["v2"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["v2"], response_model=None)
    async def ready() -> dict[str, bool] | JSONResponse:
        if not runtime.snapshot.loaded:
            return _error(503, f"model registry unavailable: {runtime.store_error or 'loading'}")
        return {"ready": True}

    @app.get("/v2", tags=["v2"])
    @app.get("/v2/", tags=["v2"], include_in_schema=False)
    async def server_metadata() -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": "2", "extensions": EXTENSIONS}

    def _lookup(model: str, version: str | None) -> tuple[ModelVersion, list[str]] | JSONResponse:
        versions = runtime.snapshot.models.get(model)
        if not versions:
            return _error(404, f"unknown model {model!r}")
        if version is None:
            return versions[runtime.snapshot.latest[model]], sorted(versions)
        if version not in versions:
            return _error(404, f"model {model!r} has no version {version!r}")
        return versions[version], [version]

    async def _metadata(model: str, version: str | None) -> Any:
        found = _lookup(model, version)
        if isinstance(found, JSONResponse):
            return found
        return model_metadata(*found)

    def _stats(request: Request, model: str | None, version: str | None) -> Any:
        snapshot = runtime.snapshot
        key: ApiKey | None = getattr(request.state, API_KEY_STATE, None)
        if model is None:
            names = [n for n in sorted(snapshot.models) if key is None or may_use_model(key, n)]
            rows = [(n, v) for n in names for v in sorted(snapshot.models[n])]
        else:
            found = _lookup(model, version)
            if isinstance(found, JSONResponse):
                return found
            rows = [(model, v) for v in found[1]]
        return {"model_stats": [runtime.stats.model_stats(n, v) for n, v in rows]}

    # Before /v2/models/{model_name}: a model named `stats` has no metadata route (as on
    # Triton, whose statistics path is the same).
    @app.get("/v2/models/stats", tags=["v2"], summary="Inference statistics of every model")
    async def all_stats(request: Request) -> Any:
        return _stats(request, None, None)

    @app.get("/v2/models/{model_name}/stats", tags=["v2"], summary="Inference statistics")
    async def model_stats(request: Request, model_name: str) -> Any:
        return _stats(request, model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}/stats", tags=["v2"])
    async def version_stats(request: Request, model_name: str, model_version: str) -> Any:
        return _stats(request, model_name, model_version)

    def _config(model: str, version: str | None) -> Any:
        found = _lookup(model, version)
        if isinstance(found, JSONResponse):
            return found
        return model_config(found[0])

    @app.get("/v2/models/{model_name}/config", tags=["v2"], summary="Model configuration")
    async def config(model_name: str) -> Any:
        return _config(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}/config", tags=["v2"])
    async def version_config(model_name: str, model_version: str) -> Any:
        return _config(model_name, model_version)

    @app.get("/v2/models/{model_name}", tags=["v2"])
    async def metadata(model_name: str) -> Any:
        return await _metadata(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}", tags=["v2"])
    async def version_metadata(model_name: str, model_version: str) -> Any:
        return await _metadata(model_name, model_version)

    async def _ready(model: str, version: str | None) -> Any:
        resolution = candidates(runtime.snapshot, model, version)
        if not resolution.pools:
            return _error(resolution.status, resolution.error)
        return {"name": model, "ready": True}

    @app.get("/v2/models/{model_name}/ready", tags=["v2"])
    async def model_ready(model_name: str) -> Any:
        return await _ready(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}/ready", tags=["v2"])
    async def version_ready(model_name: str, model_version: str) -> Any:
        return await _ready(model_name, model_version)

    def _openai_model(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "mpfn"}

    @app.get("/v1/models", tags=["openai"])
    async def openai_models(request: Request) -> dict[str, Any]:
        names = runtime.snapshot.model_names("openai")
        key: ApiKey | None = getattr(request.state, API_KEY_STATE, None)
        if key is not None:  # list only what the key may use
            names = [n for n in names if may_use_model(key, n)]
        return {"object": "list", "data": [_openai_model(n) for n in names]}

    @app.get(
        "/metrics",
        tags=["router"],
        summary="Prometheus metrics of this router instance",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        return Response(await runtime.render_metrics(), media_type=CONTENT_TYPE)

    @app.get("/v1/models/{model_id}", tags=["openai"], summary="OpenAI model object")
    async def openai_model(model_id: str) -> Any:
        if runtime.snapshot.pools_for(model_id, "openai") is None:
            message = f"unknown model {model_id!r}"
            if model_id in runtime.snapshot.models:  # a v2 model: say where it is served
                message = (
                    f"model {model_id!r} is not served over the OpenAI API; its metadata is "
                    f"at /v2/models/{model_id}, and it predicts at /v2/models/{model_id}/infer "
                    f"or /v1/models/{model_id}:predict"
                )
            return _openai_error(404, message, param="model", code="model_not_found")
        return _openai_model(model_id)

    @app.api_route("/v1/responses", methods=["GET", "POST"], include_in_schema=False)
    @app.api_route("/v1/responses/{rest:path}", methods=["GET", "POST", "DELETE"],
                   include_in_schema=False)  # fmt: skip
    async def responses_api() -> JSONResponse:
        return _openai_error(
            404,
            "the OpenAI Responses API (/v1/responses) is not served by this router: use "
            "/v1/chat/completions",
            code="unsupported_endpoint",
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema["paths"].update(forwarded_paths())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
