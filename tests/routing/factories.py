"""Small builders for routing documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mpfn.documents import ModelVersion, Policy


def model(
    name: str = "m",
    version: str = "1",
    *,
    fmt: str = "onnx",
    hardware: Sequence[str] = ("cpu",),
    load_ms: float | None = None,
) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "name": name,
            "version": version,
            "format": fmt,
            "hardware": list(hardware),
            "load_time_ms": load_ms,
        }
    )


def policy(name: str = "default", **fields: Any) -> Policy:
    return Policy.model_validate({"name": name, **fields})
