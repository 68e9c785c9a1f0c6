"""Router settings: timeouts, limits and intervals, read from the environment.

Only plain values live here; nothing in this module opens a connection or reads the store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """Tunables of one router instance.

    `refresh_ttl_s`: how old the in-memory state snapshot may get before it is refreshed.
    `usage_flush_s`: how often per-minute usage counts are written to the store.
    `max_body_bytes`: largest request body accepted (413 above it).
    `connect_timeout_s`: per-attempt connect timeout towards a backend.
    `request_timeout_s`: whole-request deadline when no policy sets `timeout_ms`.
    `down_cooldown_s`: how long a backend that refused a connection is tried last.
    `instance_id`: names this router in usage keys; random per process when empty.
    """

    refresh_ttl_s: float = 5.0
    usage_flush_s: float = 10.0
    max_body_bytes: int = 64 * 1024 * 1024
    connect_timeout_s: float = 2.0
    request_timeout_s: float = 30.0
    down_cooldown_s: float = 5.0
    instance_id: str = ""

    def __post_init__(self) -> None:
        for name in ("refresh_ttl_s", "usage_flush_s", "connect_timeout_s", "request_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be > 0")
        if self.down_cooldown_s < 0:
            raise ValueError("down_cooldown_s must be >= 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RouterSettings:
        """Read `MPFN_ROUTER_<FIELD>` variables (e.g. `MPFN_ROUTER_MAX_BODY_BYTES`)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"MPFN_ROUTER_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            try:
                if f.type in ("float", float):
                    values[f.name] = float(raw)
                elif f.type in ("int", int):
                    values[f.name] = int(raw)
                else:
                    values[f.name] = raw
            except ValueError:
                raise ValueError(
                    f"MPFN_ROUTER_{f.name.upper()}={raw!r}: expected a {f.type}"
                ) from None
        return cls(**values)  # type: ignore[arg-type]
