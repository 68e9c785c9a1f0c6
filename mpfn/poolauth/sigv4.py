"""AWS Signature Version 4 for one request to a pool behind AWS IAM (API Gateway, a
Lambda Function URL, a VPC Lattice service): the headers that sign it, with the
process's own AWS credentials (its role)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def sigv4_headers(
    credentials: Any,
    region: str,
    service: str,
    method: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
) -> dict[str, str]:
    """The `Authorization`, `X-Amz-Date` (and session token) headers signing the request."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials.get_frozen_credentials(), service, region).add_auth(request)
    wanted = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")
    return {k: v for k, v in request.headers.items() if k.lower() in wanted}
