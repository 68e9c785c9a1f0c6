"""The one way tests build a Pool document."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mpfn.documents import Pool


def pool(
    pool_id: str,
    endpoint: str | None = None,
    *,
    adapter: str = "ort",
    models: Iterable[str] = (),
    cost: float = 0.0,
    cloud: str = "local",
    **fields: Any,
) -> Pool:
    """A pool `pool_id` at `endpoint` (default: a `.invalid` host nothing answers on);
    `cost` is its `cost_per_hour`, `fields` any other Pool field (`region`, `capacity`, ...)."""
    return Pool.model_validate(
        {
            "id": pool_id,
            "cloud": cloud,
            "adapter": adapter,
            "endpoint": endpoint or f"http://{pool_id}.invalid:8000",
            "models": list(models),
            "cost_per_hour": cost,
            **fields,
        }
    )
