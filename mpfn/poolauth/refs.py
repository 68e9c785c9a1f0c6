"""Secret references: where a secret lives, written as `SCHEME:LOCATION[#FIELD]`. Pure.

| reference | the secret |
|---|---|
| `env:NAME` | environment variable NAME of the process that resolves it |
| `file:/path` | the file's content (a mounted Kubernetes Secret, a Docker secret, ...) |
| `aws-sm:NAME-OR-ARN[#FIELD]` | AWS Secrets Manager `SecretString` (or binary) |
| `gcp-sm:projects/P/secrets/S[/versions/V][#FIELD]` | GCP Secret Manager (`latest` by default) |
| `k8s:NAMESPACE/NAME/KEY` | one key of a Kubernetes Secret, read through the API |

`#FIELD` picks one field of a secret that holds a JSON object. A reference is what pool
documents store; the secret itself never is. Its `str` is the only text about a reference
that errors and logs show: scheme and location, never a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Scheme = Literal["env", "file", "aws-sm", "gcp-sm", "k8s"]
SCHEMES: tuple[Scheme, ...] = ("env", "file", "aws-sm", "gcp-sm", "k8s")

_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")
_GCP = re.compile(r"^projects/[^/#\s]+/secrets/[^/#\s]+(/versions/[^/#\s]+)?$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_K8S_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


class BadReference(ValueError):
    """Text that is not a secret reference (perhaps a secret pasted in by mistake)."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    scheme: Scheme
    location: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.scheme}:{self.location}" + (f"#{self.field}" if self.field else "")


def parse_ref(text: str) -> SecretRef:
    """`text` as a reference; BadReference saying what a reference looks like otherwise.
    The message never repeats `text` beyond its scheme: it may be a secret."""
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in SCHEMES:
        raise BadReference(
            "a secret is given by reference, not by value: "
            + ", ".join(f"{s}:..." for s in SCHEMES)
        )
    location, _, field = rest.partition("#")
    ref = SecretRef(scheme, location, field or None)  # type: ignore[arg-type]
    _check(ref)
    return ref


def _check(ref: SecretRef) -> None:
    where = ref.location
    if ref.scheme == "env":
        if not _ENV.match(where) or ref.field:
            raise BadReference("env: takes an environment variable name (env:POOL_TOKEN)")
    elif ref.scheme == "file":
        if not where.startswith("/") or ref.field:
            raise BadReference("file: takes an absolute path (file:/var/run/secrets/token)")
    elif ref.scheme == "aws-sm":
        if not where or len(where) > 2048 or any(c.isspace() for c in where):
            raise BadReference("aws-sm: takes a secret name or ARN (aws-sm:mpfn/pool-token)")
    elif ref.scheme == "gcp-sm":
        if not _GCP.match(where):
            raise BadReference("gcp-sm: takes projects/PROJECT/secrets/NAME[/versions/VERSION]")
    else:
        parts = where.split("/")
        if (
            len(parts) != 3
            or not _K8S_NAME.match(parts[0])
            or not _K8S_NAME.match(parts[1])
            or not _K8S_KEY.match(parts[2])
            or ref.field
        ):
            raise BadReference("k8s: takes NAMESPACE/SECRET/KEY (k8s:mpfn/pool-token/token)")


def gcp_version_name(ref: SecretRef) -> str:
    """The Secret Manager version resource a `gcp-sm:` reference names."""
    return ref.location if "/versions/" in ref.location else f"{ref.location}/versions/latest"
