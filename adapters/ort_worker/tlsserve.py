"""Serving TLS (and requiring client certificates) from the worker and the adapter server:
the command-line flags and the uvicorn settings they become."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path
from typing import Any


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS and access")
    group.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    group.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    group.add_argument(
        "--tls-client-ca", type=Path, help="require client certificates issued by this CA (mTLS)"
    )
    group.add_argument(
        "--token-file",
        type=Path,
        help="require 'Authorization: Bearer <token>' on inference and metadata too; one "
        "accepted token per line, re-read when the file changes",
    )


def check_tls_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    for flag in ("tls_cert", "tls_key", "tls_client_ca", "token_file"):
        path = getattr(args, flag)
        if path is not None and not path.is_file():
            parser.error(f"--{flag.replace('_', '-')} {path}: no such file")


def uvicorn_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> dict[str, Any]:
    """uvicorn.Config keyword arguments for these flags (none when serving plain HTTP)."""
    if cert is None or key is None:
        return {}
    out: dict[str, Any] = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    if client_ca is not None:
        out.update(ssl_ca_certs=str(client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    return out
