"""The router's FastAPI app: health, metadata, model listings, metrics and the OpenAPI
schema.

Answers come from the in-memory registry snapshot only (`/metrics` from the router's own
registry of counters). The forwarding routes are declared here so the schema documents
them, but their requests are served by `ForwardingRoutes` (the same code either way).
Backend management endpoints such as `/v2/repository/...` are deliberately absent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from mpfn.auth import AuthError, key_id_of, may_use_model, parse_bearer
from mpfn.documents import ModelVersion, TensorSpec
from mpfn.functions.router.errors import RouteError
from mpfn.functions.router.guard import authorization
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
_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "Binary-tensor extension: JSON header of "
                "Inference-Header-Content-Length bytes followed by raw tensor data",
            },
        },
    }
}


# What the forwarding routes answer on success: v2 infer in JSON or binary tensors (after a
# JSON header of Inference-Header-Content-Length bytes); OpenAI routes in JSON, or SSE.
_V2_OK = {
    "200": {
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }
    }
}
_OPENAI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model"],
                    "properties": {"model": {"type": "string"}},
                }
            }
        },
    }
}
_OPENAI_OK = {
    "200": {
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {"schema": {"type": "string"}},
        }
    }
}
# Every route may answer an error `{"error": ...}` (4xx/5xx, see docs/router.md); the
# forwarding routes also relay backends' own errors, whose `error` may be an object.
_ERROR_BODY = {
    "content": {
        "application/json": {
            "schema": {"type": "object", "required": ["error"], "properties": {"error": {}}}
        }
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"description": "Client error", **_ERROR_BODY},
    "5XX": {"description": "Backend or registry unavailable", **_ERROR_BODY},
}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    """OpenAPI path parameters of a route template (`{model_name}` -> a required string)."""
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _key_id(request: Request) -> str | None:
    """The id of the API key a request presented (already verified upstream)."""
    try:
        presented = parse_bearer(authorization(request.scope["headers"]))
        return key_id_of(presented)[0] if presented else None
    except AuthError:
        return None


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


class _Delegate(Response):
    """A response that lets a raw ASGI handler answer the request itself."""

    def __init__(self, handler: Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]):
        self.handler = handler
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


def create_api(
    runtime: RouterRuntime,
    forward: Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]],
) -> FastAPI:
    """Build the FastAPI app; `forward` serves the documented forwarding routes."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="mpfn router", version="0.1.0", lifespan=lifespan, responses=_ERRORS)

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
        if not runtime.background:
            await runtime.tick()
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
        if not runtime.background:
            await runtime.tick()
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
        if not runtime.background:
            await runtime.tick()
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

    def _forwarded(path: str, summary: str, tag: str) -> None:
        async def endpoint(request: Request) -> Response:
            return _Delegate(forward)

        body, ok = (_JSON_BODY, _V2_OK) if tag == "v2" else (_OPENAI_BODY, _OPENAI_OK)
        extra = {**body, "parameters": _path_parameters(path), "responses": ok}
        app.post(path, tags=[tag], summary=summary, openapi_extra=extra)(endpoint)

    _forwarded("/v2/models/{model_name}/infer", "Inference (any version)", "v2")
    _forwarded("/v2/models/{model_name}/versions/{model_version}/infer", "Inference", "v2")
    _forwarded("/v1/chat/completions", "Chat completion (SSE when stream=true)", "openai")
    _forwarded("/v1/completions", "Completion", "openai")
    _forwarded("/v1/embeddings", "Embeddings", "openai")

    def _openai_model(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "mpfn"}

    @app.get("/v1/models", tags=["openai"])
    async def openai_models(request: Request) -> dict[str, Any]:
        if not runtime.background:
            await runtime.tick()
        names = runtime.snapshot.model_names("openai")
        if runtime.settings.auth == "keys":  # the key was checked; list what it may use
            key = _key_id(request)
            doc = runtime.snapshot.keys.get(key) if key else None
            names = [n for n in names if doc is not None and may_use_model(doc, n)]
        return {"object": "list", "data": [_openai_model(n) for n in names]}

    @app.get(
        "/metrics",
        tags=["router"],
        summary="Prometheus metrics of this router instance",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics(request: Request) -> Response:
        if runtime.settings.metrics_auth == "keys":
            try:
                await runtime.authenticate(request.scope["headers"])
            except RouteError as exc:
                headers = {k.decode(): v.decode() for k, v in exc.headers}
                return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)
        return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models/{model_id}", tags=["openai"])
    async def openai_model(model_id: str) -> Any:
        if runtime.snapshot.pools_for(model_id, "openai") is None:
            return _error(404, f"unknown model {model_id!r}")
        return _openai_model(model_id)

    return app
