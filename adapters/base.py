"""The backend adapter interface: one small async contract every backend kind implements.

An adapter translates mpfn's protocol (Open Inference Protocol v2 requests, or OpenAI
requests for LLM servers) to one backend's native API and manages what is loaded there.
Adapters are discovered as plug-ins through the `mpfn.adapters` entry-point group; a pool's
`adapter` field names one. This module defines only types; it performs no I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx

from mpfn.documents import ArtifactRef, ModelVersion, Pool
from mpfn.protocol import InferRequest, InferResponse


class AdapterError(Exception):
    """A backend call failed. `status` is the HTTP status mpfn answers with.

    4xx: the request was bad (passed to the client as a JSON error); 5xx: the backend
    failed (the router may fail over). `overloaded` marks a backend that said it is busy
    (429, or 503 with Retry-After): backpressure, not a failure.
    """

    def __init__(self, status: int, message: str, *, overloaded: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.overloaded = overloaded


@dataclass(frozen=True)
class LoadResult:
    model: str
    version: str
    load_ms: float


@dataclass(frozen=True)
class AdapterStats:
    """What an adapter reports for feedback (scheduler) and planning (warmer)."""

    loaded: tuple[str, ...] = ()
    in_flight: int = 0
    queued: int = 0
    requests: int = 0
    errors: int = 0
    load_ms: Mapping[str, float] = field(default_factory=dict)  # last load time per model
    latency_ms: Mapping[str, float] = field(default_factory=dict)  # recent mean per model
    extra: Mapping[str, Any] = field(default_factory=dict)  # backend-specific numbers


class ArtifactSource(Protocol):
    def __call__(self, ref: ArtifactRef) -> Path: ...


@dataclass(frozen=True)
class AdapterConfig:
    """Per-pool adapter settings; credentials come from config/secrets, never requests."""

    pool: Pool
    management_url: str | None = None  # e.g. TorchServe :8081, Triton's repository API
    credentials: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0
    options: Mapping[str, Any] = field(default_factory=dict)
    # For adapters that upload models to their backend (Triton, TorchServe): returns a
    # verified local copy of an artifact, e.g. `functools.partial(fetch_cached, store,
    # cache_dir=...)`. It does blocking I/O; adapters call it in a worker thread.
    artifacts: ArtifactSource | None = None
    # Where an adapter keeps what must outlive its process (TF Serving's model config
    # list, of which the adapter is the only writer); None: memory only.
    state_dir: Path | None = None


@runtime_checkable
class Adapter(Protocol):
    """One backend kind. Instances are per pool, long-lived, and own no global state."""

    kind: ClassVar[str]

    async def infer(self, model: ModelVersion, request: InferRequest) -> InferResponse:
        """Run a v2 inference; raise AdapterError with a 4xx/5xx status on failure."""
        ...

    async def load(self, model: ModelVersion) -> LoadResult:
        """Make `model` ready on the backend (for LLM servers: a warm-up request)."""
        ...

    async def unload(self, model: ModelVersion) -> None: ...

    async def ready(self, model: ModelVersion | None = None) -> bool:
        """Server readiness (model None) or whether `model` is ready to serve."""
        ...

    async def loaded(self) -> list[str]:
        """Names (`name` or `name:version`) of models currently loaded."""
        ...

    async def stats(self) -> AdapterStats: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ChatAdapter(Adapter, Protocol):
    """Adapters for OpenAI-compatible LLM servers also speak OpenAI's JSON API."""

    async def openai(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST an OpenAI request (`/v1/chat/completions`, ...) and return the JSON."""
        ...

    def openai_stream(self, path: str, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """POST a streaming OpenAI request; yield the SSE bytes as they arrive."""
        ...


class AdapterFactory(Protocol):
    def __call__(
        self, config: AdapterConfig, *, client: httpx.AsyncClient | None = None
    ) -> Adapter: ...
