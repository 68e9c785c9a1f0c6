"""The one error type of the v2 codec: an HTTP status and a one-line message for the client."""

from __future__ import annotations


class ProtocolError(Exception):
    """A request or response that violates the protocol; `status` is the HTTP status to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"ProtocolError({self.status}, {self.message!r})"
