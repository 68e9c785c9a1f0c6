"""Amazon S3 (and S3-compatible) store: `s3://bucket/prefix`.

Optimistic concurrency uses S3 conditional writes: `If-Match` / `If-None-Match: *` on
PutObject and `If-Match` on DeleteObject; reads revalidate with `If-None-Match`. Every
call goes through one injectable boto3 client with short timeouts and few retries, so an
unreachable store fails within seconds. Errors become one-line `StoreError`s; this module
never caches, retries documents, or interprets their content.
"""

from __future__ import annotations

from typing import Any, NoReturn

from mpfn.extras import install_hint
from mpfn.store.base import (
    Blob,
    KeyNotFound,
    PreconditionFailed,
    StoreUnavailable,
    check_key,
    normalize_etag,
)

_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "403",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class S3Store:
    """A bucket (and optional key prefix) on S3 or an S3-compatible server."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        write_client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        addressing_style: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        max_attempts: int = 2,
        **unknown: object,
    ) -> None:
        if unknown:
            raise ValueError(f"unknown s3 store option(s): {', '.join(sorted(unknown))}")
        if not bucket:
            raise ValueError("s3 store: bucket name is empty")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        options: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region": region,
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key,
            "session_token": session_token,
            "profile": profile,
            "addressing_style": addressing_style,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
        }
        if client is None:
            client = _make_client(**options, max_attempts=max_attempts)
            # Conditional writes are never retried by the SDK: a retry after a lost
            # response would see its own write as a conflict and the caller would apply
            # its change twice. An unknown outcome surfaces as StoreUnavailable instead.
            write_client = write_client or _make_client(**options, max_attempts=1)
        self.client = client
        self.write_client = write_client or client
        self.endpoint = str(getattr(client.meta, "endpoint_url", "") or "S3")

    # -- keys --------------------------------------------------------------------------

    def _object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, object_key: str) -> str:
        return object_key[len(self.prefix) + 1 :] if self.prefix else object_key

    # -- operations --------------------------------------------------------------------

    def get(self, key: str, *, if_none_match: str | None = None) -> Blob | None:
        name = self._object_key(key)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": name}
        if if_none_match is not None:
            kwargs["IfNoneMatch"] = f'"{if_none_match}"'
        try:
            response = self.client.get_object(**kwargs)
            body = response["Body"].read()
        except Exception as exc:
            if _status(exc) == 304:
                return None
            self._raise(exc, key)
        etag = normalize_etag(response.get("ETag", ""))
        if if_none_match is not None and etag == if_none_match:
            return None
        return Blob(body=body, etag=etag)

    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        if_absent: bool = False,
    ) -> str:
        if if_match is not None and if_absent:
            raise ValueError("put: use either if_match or if_absent, not both")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._object_key(key)}
        if if_match is not None:
            kwargs["IfMatch"] = f'"{if_match}"'
        if if_absent:
            kwargs["IfNoneMatch"] = "*"
        try:
            writer = self.write_client if (if_match or if_absent) else self.client
            response = writer.put_object(Body=body, **kwargs)
        except Exception as exc:
            self._raise(exc, key, exists=if_absent)
        return normalize_etag(response.get("ETag", ""))

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        name = self._object_key(key)
        if if_match is None:
            # S3 deletes are idempotent; look first so a missing key is reported.
            self._head(key)
            try:
                self.client.delete_object(Bucket=self.bucket, Key=name)
            except Exception as exc:
                self._raise(exc, key)
            return
        try:
            self.write_client.delete_object(Bucket=self.bucket, Key=name, IfMatch=f'"{if_match}"')
        except Exception as exc:
            if _code(exc) in _CONFLICT_CODES:
                self._head(key)  # KeyNotFound when it vanished rather than changed
            self._raise(exc, key)

    def list(self, prefix: str = "") -> list[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        keys: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(self._relative(obj["Key"]) for obj in page.get("Contents", ()))
        except Exception as exc:
            self._raise(exc, prefix or "(listing)")
        return sorted(keys)

    # -- helpers -----------------------------------------------------------------------

    def _head(self, key: str) -> None:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except Exception as exc:
            self._raise(exc, key)

    def _raise(self, exc: Exception, key: str, *, exists: bool = False) -> NoReturn:
        raise translate_error(exc, self, key, exists=exists) from None


def _make_client(
    *,
    endpoint_url: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    session_token: str | None,
    profile: str | None,
    addressing_style: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
) -> Any:
    """A boto3 S3 client; `AWS_ENDPOINT_URL(_S3)` is honoured by botocore when no URL is given."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise StoreUnavailable("s3:// state needs boto3: " + install_hint("aws")) from None
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        s3={"addressing_style": addressing_style} if addressing_style else None,
    )
    try:
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            region_name=region,
            profile_name=profile,
        )
        return session.client("s3", endpoint_url=endpoint_url, config=config)
    except (BotoCoreError, ValueError) as exc:
        raise StoreUnavailable(f"cannot configure S3 client: {_one_line(exc)}") from None


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def translate_error(exc: Exception, store: S3Store, key: str, *, exists: bool = False) -> Exception:
    """Map a botocore exception to the one-line `StoreError` the store contract promises."""
    from botocore import exceptions as bce

    where = f"{store.url}/{key}" if key and not key.startswith("(") else store.url
    if isinstance(exc, bce.ClientError):
        code, status = _code(exc), _status(exc)
        message = _one_line(exc.response.get("Error", {}).get("Message", "")) or code
        if code == "NoSuchBucket":
            return StoreUnavailable(f"s3://{store.bucket}: bucket does not exist")
        if code in _CONFLICT_CODES or status in (409, 412):
            if exists:
                return PreconditionFailed(f"{key}: already exists")
            return PreconditionFailed(f"{key}: changed since it was read")
        if code in _NOT_FOUND_CODES or status == 404:
            return KeyNotFound(f"{key}: not found in {store.url}")
        if code in _CREDENTIAL_CODES or status in (401, 403):
            return StoreUnavailable(
                f"s3://{store.bucket}: credentials refused by {store.endpoint} ({code}: {message})"
            )
        return StoreUnavailable(f"{where}: {code or status}: {message}")
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return StoreUnavailable(f"s3://{store.bucket}: no AWS credentials found ({_one_line(exc)})")
    if isinstance(
        exc,
        bce.EndpointConnectionError
        | bce.ConnectTimeoutError
        | bce.ReadTimeoutError
        | bce.ConnectionClosedError,
    ):
        return StoreUnavailable(f"cannot reach {store.endpoint} for {store.url}: {_one_line(exc)}")
    if isinstance(exc, bce.BotoCoreError):
        return StoreUnavailable(f"{where}: {_one_line(exc)}")
    if isinstance(exc, OSError):
        return StoreUnavailable(f"cannot reach {store.endpoint} for {store.url}: {_one_line(exc)}")
    raise exc
