"""Pool sizes: how many replicas each pool runs, set through its platform's API.

`decide` turns what the warmer wants into a size with hysteresis and cooldowns (pure);
`scalers` read and set the size of an ECS service, a Cloud Run service, a Kubernetes
Deployment (its scale subresource) or a pool of `mpfn up`; `size` keeps each pool's
size history (`scaling/<pool>.json`), from which replica-time and cost are computed.
"""

from __future__ import annotations

from mpfn.scaling.decide import ScaleSettings, SizeDecision, decide_size
from mpfn.scaling.scalers import ScaleError, Scaler, ScalerClients, scaler_for
from mpfn.scaling.size import PoolSize, read_size, record_size, size_key

__all__ = [
    "PoolSize",
    "ScaleError",
    "ScaleSettings",
    "Scaler",
    "ScalerClients",
    "SizeDecision",
    "decide_size",
    "read_size",
    "record_size",
    "scaler_for",
    "size_key",
]
