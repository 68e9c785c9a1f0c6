"""The OpenAPI description of the forwarding routes (v2 infer, OpenAI POSTs).

The request pipeline serves these routes without the web framework, so the framework
cannot describe them; `forwarded_paths` adds them to the schema the FastAPI app builds.
"""

from __future__ import annotations

from typing import Any

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
ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"description": "Client error", **_ERROR_BODY},
    "5XX": {"description": "Backend or registry unavailable", **_ERROR_BODY},
}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    """OpenAPI path parameters of a route template (`{model_name}` -> a required string)."""
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


FORWARDED = (
    ("/v2/models/{model_name}/infer", "Inference (any version)", "v2"),
    ("/v2/models/{model_name}/versions/{model_version}/infer", "Inference", "v2"),
    ("/v1/chat/completions", "Chat completion (SSE when stream=true)", "openai"),
    ("/v1/completions", "Completion", "openai"),
    ("/v1/embeddings", "Embeddings", "openai"),
)


def operation_id(path: str) -> str:
    """`/v2/models/{model_name}/infer` -> `infer_v2_models__model_name__infer_post`."""
    return "infer" + "".join(c if c.isalnum() else "_" for c in path) + "_post"


def forwarded_paths() -> dict[str, Any]:
    """OpenAPI path items of every forwarding route."""
    paths: dict[str, Any] = {}
    for path, summary, tag in FORWARDED:
        body, ok = (_JSON_BODY, _V2_OK) if tag == "v2" else (_OPENAI_BODY, _OPENAI_OK)
        responses = {code: {"description": "Successful Response", **r} for code, r in ok.items()}
        paths[path] = {
            "post": {
                "tags": [tag],
                "summary": summary,
                "operationId": operation_id(path),
                "parameters": _path_parameters(path),
                **body,
                "responses": {**responses, **ERRORS},
            }
        }
    return paths
