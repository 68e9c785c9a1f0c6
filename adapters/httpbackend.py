"""HTTP plumbing shared by the built-in adapters: calls, error mapping, self-measured feedback.

`send` performs one request on the adapter's (injectable) `httpx.AsyncClient` and turns
transport failures into `AdapterError` 503/504; `backend_error` turns a backend's error
answer into an `AdapterError` whose message is one line, safe to return to a client as
mpfn's `{"error": ...}`; `Measured` keeps what an adapter observes itself (latency EWMA,
time to first token, counts, load times). Nothing here holds global state or credentials.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from mpfn.adapters.base import AdapterError, AdapterStats
from mpfn.documents import ModelVersion

MAX_MESSAGE = 500
_SPACE = re.compile(r"\s+")


def model_id(model: ModelVersion) -> str:
    """How adapters name a model version in `loaded()` and stats: `name:version`."""
    return f"{model.name}:{model.version}"


def bearer_headers(credentials: Mapping[str, str]) -> dict[str, str]:
    """`Authorization: Bearer ...` from the pool's configured secret (`api_key` or `token`)."""
    secret = credentials.get("api_key") or credentials.get("token")
    return {"authorization": f"Bearer {secret}"} if secret else {}


def one_line(text: str) -> str:
    """A client-safe message: whitespace collapsed, at most MAX_MESSAGE characters."""
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def error_text(body: bytes) -> str:
    """The message in a backend's error body, whatever its dialect.

    v2 and TF Serving: `{"error": "..."}`; OpenAI: `{"error": {"message": ...}}`;
    FastAPI: `{"detail": ...}`; TorchServe: `{"message": ...}`; else the text itself.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace") or "(empty body)"
    if isinstance(doc, dict):
        for key in ("error", "message", "detail"):
            value = doc.get(key)
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
            if isinstance(value, str):
                return value
            if value is not None:
                return orjson.dumps(value).decode()
    return orjson.dumps(doc).decode()


def status_for(backend_status: int) -> int:
    """The status mpfn answers with when a backend answered `backend_status`.

    Client errors pass through, except the backend rejecting mpfn's own credentials (the
    client cannot fix that: 502) and backend overload (429: 503, so the router fails over).
    """
    if backend_status in (401, 403):
        return 502
    if backend_status == 429:
        return 503
    if 400 <= backend_status < 600:
        return backend_status
    return 502


def backend_error(kind: str, response: httpx.Response) -> AdapterError:
    """An AdapterError for a non-success answer; the response body must have been read.
    A 429, or a 503 with Retry-After, is marked `overloaded` (the backend's backpressure)."""
    status = status_for(response.status_code)
    text = error_text(response.content)
    if response.status_code in (401, 403):
        text = f"the backend rejected the pool's credentials ({response.status_code}): {text}"
    busy = response.status_code == 429 or (
        response.status_code == 503 and "retry-after" in response.headers
    )
    return AdapterError(status, one_line(f"{kind} backend: {text}"), overloaded=busy)


async def send(
    client: httpx.AsyncClient, kind: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """One request; unreachable backends become 503, timeouts 504."""
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise AdapterError(504, f"{kind} backend timed out: {method} {_no_query(url)}") from None
    except httpx.HTTPError as exc:
        raise AdapterError(
            503, one_line(f"{kind} backend unreachable: {method} {_no_query(url)}: {exc}")
        ) from None


def _no_query(url: str) -> str:
    return url.split("?", 1)[0]


def json_body(kind: str, response: httpx.Response) -> Any:
    """A success response's JSON; a malformed body is the backend's fault (502)."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise AdapterError(502, f"{kind} backend sent invalid JSON: {exc}") from None


@dataclass
class Measured:
    """What an adapter measured itself. Keys are model names as the adapter reports them."""

    alpha: float = 0.2
    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    ttft_ms: dict[str, float] = field(default_factory=dict)
    load_ms: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def track(self, model: str) -> Iterator[None]:
        """Count one request; time it into the model's latency EWMA when it succeeds.

        For a stream the time runs until the consumer has read (or dropped) it all."""
        started = time.perf_counter()
        self.requests += 1
        self.in_flight += 1
        try:
            yield
        except Exception:  # not cancellation, nor a consumer closing a stream early
            self.errors += 1
            raise
        else:
            self.observe(self.latency_ms, model, (time.perf_counter() - started) * 1000)
        finally:
            self.in_flight -= 1

    def observe(self, into: dict[str, float], model: str, value_ms: float) -> None:
        previous = into.get(model)
        into[model] = (
            value_ms if previous is None else previous + self.alpha * (value_ms - previous)
        )

    def stats(self, loaded: tuple[str, ...], **overrides: Any) -> AdapterStats:
        """An AdapterStats snapshot from these measurements (fields may be overridden)."""
        values: dict[str, Any] = {
            "loaded": loaded,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "errors": self.errors,
            "load_ms": dict(self.load_ms),
            "latency_ms": dict(self.latency_ms),
        }
        values.update(overrides)
        return AdapterStats(**values)
