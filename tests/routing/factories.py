"""Small builders for routing documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mpfn.documents import ModelVersion, Policy, Pool


def pool(
    pool_id: str,
    *,
    cloud: str = "local",
    region: str = "local",
    adapter: str = "ort",
    hardware: Sequence[str] = ("cpu",),
    cost: float = 0.0,
    capacity: int = 1,
    models: Sequence[str] = (),
) -> Pool:
    return Pool.model_validate(
        {
            "id": pool_id,
            "cloud": cloud,
            "region": region,
            "adapter": adapter,
            "endpoint": f"http://{pool_id}.invalid:8000",
            "hardware": list(hardware),
            "cost_per_hour": cost,
            "capacity": capacity,
            "models": list(models),
        }
    )


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
