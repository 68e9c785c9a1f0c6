"""The adapter server's one mapping from exceptions to HTTP answers.

Every failure becomes `(status, message, extra headers)` for a JSON `{"error": message}`
body; no traceback ever reaches a client. Backpressure — this server's own queue being
full, or the backend saying it is busy (`AdapterError.overloaded`) — is 503 with
`Retry-After: 1`, which the router treats as "try another pool", not as a failure. Every
other backend failure is 502, 503 or 504 without Retry-After, so the router fails over and
its breakers count it.
"""

from __future__ import annotations

import logging

from mpfn.adapters.base import AdapterError
from mpfn.adapters.ort_worker.admission import QueueFull
from mpfn.adapters.ort_worker.errors import WorkerError
from mpfn.adapters.ort_worker.guard import CHALLENGE, Unauthorized
from mpfn.protocol import ProtocolError

log = logging.getLogger("mpfn.adapter_server")

Headers = list[tuple[bytes, bytes]]
RETRY_AFTER = (b"retry-after", b"1")


def backend_status(error: AdapterError) -> int:
    """A client error passes through; a backend failure is 502, 503 or 504."""
    if 400 <= error.status < 500:
        return error.status
    if error.status in (503, 504):
        return error.status
    return 502


def failure(exc: BaseException) -> tuple[int, str, Headers]:
    """Map any exception to (status, message, extra headers)."""
    if isinstance(exc, AdapterError):
        if exc.overloaded:
            return 503, exc.message, [RETRY_AFTER]
        return backend_status(exc), exc.message, []
    if isinstance(exc, ProtocolError):
        return exc.status, exc.message, []
    if isinstance(exc, QueueFull):
        return 503, "queue full", [RETRY_AFTER]
    if isinstance(exc, Unauthorized):
        return 401, exc.message, [CHALLENGE]
    if isinstance(exc, WorkerError):
        return exc.status, exc.message, []
    log.error("unexpected error", exc_info=exc)
    return 500, f"internal error: {type(exc).__name__}", []
