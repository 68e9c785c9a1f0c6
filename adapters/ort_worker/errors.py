"""Errors the worker turns into HTTP responses: a status and a one-line message."""

from __future__ import annotations


class WorkerError(Exception):
    """A failure with the HTTP status to report and a message for the client."""

    status = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class ModelNotFound(WorkerError):
    """No document for this model (or version) in the store."""

    status = 404


class ModelUnavailable(WorkerError):
    """The model exists but cannot be served right now (store down, artifact bad, no room)."""

    status = 503


class BodyTooLarge(WorkerError):
    status = 413


class ClientDisconnected(Exception):
    """The client went away before sending its whole request."""
