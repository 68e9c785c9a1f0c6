"""Client TLS contexts from PEM material: a private CA to trust, a client certificate.

A given CA replaces the system trust store for that pool (a pool on a private CA is not
vouched for by public CAs, and the reverse). Python loads certificate chains from files
only, so the certificate and key are written to a private temporary directory for the
load and removed at once.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path


class BadTLSMaterial(ValueError):
    """PEM that does not load; the message names which part, never its content."""


def client_context(
    ca: bytes | None = None, cert: bytes | None = None, key: bytes | None = None
) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cadata=ca.decode("ascii") if ca else None)
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise BadTLSMaterial("tls.ca is not a PEM CA bundle") from None
    if cert is not None and key is not None:
        load_chain(context, cert, key)
    return context


def load_chain(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="mpfn-tls-") as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            context.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, OSError):
            raise BadTLSMaterial("tls.cert and tls.key are not a matching PEM pair") from None
