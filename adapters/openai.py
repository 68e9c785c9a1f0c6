"""The `openai` adapter: OpenAI-compatible LLM servers (vLLM, TGI, llama.cpp, Ollama).

`openai`/`openai_stream` POST chat, completion and embedding requests (only those three
paths: anything else, management routes included, is refused) and measure latency and
time to first token. Such servers have no load API: `load` checks the model is listed by
`/v1/models` and sends a timed warm-up request (its time is the `LoadResult`); `unload`
only forgets that warmth (no standard unload call exists); `ready(model)` means listed and
warmed; servers without `/v1/models` are checked through `/health`. `infer` maps the
Open Inference Protocol onto completions (see `text_prompts`).

The served name is the model's `served_model` label, else its name. Options: `warmup`
(`completions`|`chat`|`embeddings`), `warmup_prompt`. The API key comes from the pool's
credentials (`api_key`), never from requests.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, ClassVar

import httpx
import numpy as np

from mpfn.adapters.base import AdapterConfig, AdapterError, AdapterStats, LoadResult
from mpfn.adapters.httpbackend import (
    Measured,
    backend_error,
    bearer_headers,
    json_body,
    send,
)
from mpfn.documents import ModelVersion
from mpfn.protocol import InferRequest, InferResponse

PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
TEXT = "text"
#: v2 request parameters passed on to `/v1/completions`.
COMPLETION_PARAMETERS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "echo",
        "user",
    }
)
#: v2's own request parameters, which mean nothing to a completion.
V2_PARAMETERS = frozenset({"binary_data_output", "stream"})
_WARMUPS: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
    "completions": ("/v1/completions", lambda prompt: {"prompt": prompt, "max_tokens": 1}),
    "chat": (
        "/v1/chat/completions",
        lambda prompt: {"messages": [{"role": "user", "content": prompt}], "max_tokens": 1},
    ),
    "embeddings": ("/v1/embeddings", lambda prompt: {"input": prompt}),
}


def served_name(model: ModelVersion) -> str:
    """The name the server knows the model by (`served_model` label, else the model name)."""
    return model.labels.get("served_model", model.name)


def text_prompts(request: InferRequest) -> tuple[list[str], tuple[int, ...]]:
    """The v2 -> completions mapping: one BYTES input named `text`, any shape; each element
    is one prompt. The response has one BYTES output `text` of the same shape holding each
    completion. Anything else is a 400."""
    if len(request.inputs) != 1 or request.inputs[0].name != TEXT:
        names = ", ".join(t.name for t in request.inputs) or "none"
        raise AdapterError(
            400, f"OpenAI-compatible models take one BYTES input named '{TEXT}' (got: {names})"
        )
    tensor = request.inputs[0]
    if tensor.datatype != "BYTES":
        raise AdapterError(400, f"input '{TEXT}' must be BYTES, got {tensor.datatype}")
    if tensor.array.size == 0:
        raise AdapterError(400, f"input '{TEXT}' holds no prompt")
    prompts: list[str] = []
    for item in tensor.array.ravel():
        try:
            prompts.append(item.decode() if isinstance(item, bytes) else str(item))
        except UnicodeDecodeError:
            raise AdapterError(400, f"input '{TEXT}' must hold UTF-8 text") from None
    if request.outputs is not None and any(o.name != TEXT for o in request.outputs):
        raise AdapterError(400, f"OpenAI-compatible models have one output, '{TEXT}'")
    return prompts, tensor.shape


def completion_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The v2 request parameters passed to the completion; unknown ones are a 400."""
    if parameters.get("stream"):
        raise AdapterError(400, "v2 inference cannot stream; use /v1/completions with stream")
    unknown = sorted(set(parameters) - COMPLETION_PARAMETERS - V2_PARAMETERS)
    if unknown:
        allowed = ", ".join(sorted(COMPLETION_PARAMETERS))
        raise AdapterError(
            400, f"unsupported parameter(s) {', '.join(unknown)} (completions take: {allowed})"
        )
    return {k: v for k, v in parameters.items() if k in COMPLETION_PARAMETERS}


class OpenAIAdapter:
    kind: ClassVar[str] = "openai"

    def __init__(self, config: AdapterConfig, *, client: httpx.AsyncClient | None = None) -> None:
        warmup = config.options.get("warmup", "completions")
        if warmup not in _WARMUPS:
            raise ValueError(f"openai option 'warmup' must be one of {', '.join(_WARMUPS)}")
        self.config = config
        self.base = str(config.pool.endpoint).rstrip("/")
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(timeout=config.timeout_s)
        self.headers = bearer_headers(config.credentials)
        self.warmup = warmup
        self.warmup_prompt = str(config.options.get("warmup_prompt", "Hello"))
        self.warm: set[str] = set()
        self.measured = Measured()

    # -- OpenAI API ----------------------------------------------------------------------

    def _url(self, path: str) -> str:
        if path not in PATHS:
            raise AdapterError(404, f"no OpenAI route {path} (one of {', '.join(sorted(PATHS))})")
        return self.base + path

    async def openai(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        url = self._url(path)
        if body.get("stream"):
            raise AdapterError(400, "streaming requests go through openai_stream")
        with self.measured.track(str(body.get("model", ""))):
            response = await send(
                self.client, self.kind, "POST", url, json=dict(body), headers=self.headers
            )
            if response.status_code != 200:
                raise backend_error(self.kind, response)
            doc = json_body(self.kind, response)
        if not isinstance(doc, dict):
            raise AdapterError(502, "openai backend answered with JSON that is not an object")
        return doc

    async def openai_stream(self, path: str, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """Yield the server-sent-event bytes as they arrive; errors before the first byte
        raise AdapterError. Time to first token is the wait for the first `data:` chunk."""
        url = self._url(path)
        model = str(body.get("model", ""))
        payload = {**body, "stream": True}
        request = self.client.build_request("POST", url, json=payload, headers=self.headers)
        with self.measured.track(model):
            started = time.perf_counter()
            try:
                response = await self.client.send(request, stream=True)
            except httpx.TimeoutException:
                raise AdapterError(504, f"openai backend timed out: POST {url}") from None
            except httpx.HTTPError as exc:
                raise AdapterError(503, f"openai backend unreachable: POST {url}: {exc}") from None
            try:
                if response.status_code != 200:
                    await response.aread()
                    raise backend_error(self.kind, response)
                first = True
                async for chunk in response.aiter_bytes():
                    if first and b"data:" in chunk:
                        first = False
                        ttft = (time.perf_counter() - started) * 1000
                        self.measured.observe(self.measured.ttft_ms, model, ttft)
                    yield chunk
            finally:
                await response.aclose()

    # -- Open Inference Protocol ---------------------------------------------------------

    async def infer(self, model: ModelVersion, request: InferRequest) -> InferResponse:
        prompts, shape = text_prompts(request)
        parameters = completion_parameters(request.parameters)
        name = served_name(model)
        texts: list[bytes] = []
        for prompt in prompts:
            doc = await self.openai(
                "/v1/completions", {**parameters, "model": name, "prompt": prompt}
            )
            try:
                texts.append(str(doc["choices"][0]["text"]).encode())
            except (KeyError, IndexError, TypeError):
                raise AdapterError(502, "openai backend sent a completion without text") from None
        out = np.empty(len(texts), dtype=object)
        out[:] = texts
        return InferResponse(
            model_name=model.name,
            model_version=model.version,
            outputs={TEXT: out.reshape(shape)},
            datatypes={TEXT: "BYTES"},
            id=request.id,
        )

    # -- "model control": listing and warm-up --------------------------------------------

    async def listed(self) -> list[str] | None:
        """Model ids the server lists at `/v1/models`; None when it has no such route."""
        response = await send(
            self.client, self.kind, "GET", f"{self.base}/v1/models", headers=self.headers
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise backend_error(self.kind, response)
        doc = json_body(self.kind, response)
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list):
            raise AdapterError(502, "openai backend sent a model list without 'data'")
        return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]

    async def _healthy(self) -> bool:
        """`GET /health` (vLLM, TGI), for servers without `/v1/models`."""
        response = await send(
            self.client, self.kind, "GET", f"{self.base}/health", headers=self.headers
        )
        return response.status_code == 200

    async def load(self, model: ModelVersion) -> LoadResult:
        name = served_name(model)
        listed = await self.listed()
        if listed is not None and name not in listed:
            raise AdapterError(
                404, f"openai backend does not serve model '{name}' (it lists: {', '.join(listed)})"
            )
        path, make_body = _WARMUPS[self.warmup]
        started = time.perf_counter()
        await self.openai(path, {"model": name, **make_body(self.warmup_prompt)})
        load_ms = (time.perf_counter() - started) * 1000
        self.warm.add(name)
        self.measured.load_ms[name] = load_ms
        return LoadResult(model.name, model.version, load_ms)

    async def unload(self, model: ModelVersion) -> None:
        self.warm.discard(served_name(model))

    async def ready(self, model: ModelVersion | None = None) -> bool:
        """Server: `/v1/models` (else `/health`) answers. Model: also listed and warmed."""
        try:
            listed = await self.listed()
            if listed is None and not await self._healthy():
                return False
        except AdapterError:
            return False
        if model is None:
            return True
        name = served_name(model)
        return name in self.warm and (listed is None or name in listed)

    async def loaded(self) -> list[str]:
        listed = await self.listed()
        return sorted(self.warm if listed is None else self.warm & set(listed))

    async def stats(self) -> AdapterStats:
        return self.measured.stats(
            tuple(sorted(self.warm)), extra={"ttft_ms": dict(self.measured.ttft_ms)}
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()
