"""`RouteError`: a request the router must refuse, with the HTTP status to answer.

Raised by routing decisions (unknown model or version, no pool) and by the router's
request handling alike; the router function encodes it as a JSON error response.
"""

from __future__ import annotations


class RouteError(Exception):
    """A request the router must refuse; `status` is the HTTP status to answer with,
    `reason` the `x-mpfn-route-reason` of the answer, `headers` any extra response
    headers (`WWW-Authenticate`, `Retry-After`) and `rejection` the
    `mpfn_router_rejections_total` reason, if it counts as one; `param` and `code` are
    the OpenAI error fields of the answer on OpenAI routes (the request field at fault,
    a machine-readable code such as `model_not_found`)."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str = "",
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        rejection: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or f"not routed: {message}"[:200]
        self.headers = headers or []
        self.rejection = rejection
        self.param = param
        self.code = code
