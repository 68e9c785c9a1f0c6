"""The router's FastAPI app: health, metadata, model listings, metrics and the OpenAPI
schema.

Answers come from the in-memory registry snapshot only (`/metrics` from the router's own
registry of counters). Requests arrive through the request pipeline (`RouterApp`), which
has already refreshed the snapshot when due and checked the API key; handlers do neither.
The forwarding routes are served by the pipeline itself; the schema describes them too
(`mpfn.functions.router.openapi`). Backend management endpoints such as
`/v2/repository/...` are deliberately absent.
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
from mpfn.functions.router.openapi import ERRORS, forwarded_paths
from mpfn.functions.router.pipeline import API_KEY_STATE
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


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


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

    app = FastAPI(title="mpfn router", version="0.1.0", lifespan=lifespan, responses=ERRORS)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            ".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors()
        )
        return _error(400, problems or "invalid request")

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
        return {"name": SERVER_NAME, "version": "2", "extensions": ["binary_tensor_data"]}

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
        return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models/{model_id}", tags=["openai"])
    async def openai_model(model_id: str) -> Any:
        if runtime.snapshot.pools_for(model_id, "openai") is None:
            return _error(404, f"unknown model {model_id!r}")
        return _openai_model(model_id)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema["paths"].update(forwarded_paths())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
