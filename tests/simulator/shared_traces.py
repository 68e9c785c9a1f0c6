"""Where the real workload traces live (`shared/data/traces` beside the checkout).

CI lays `shared/` beside the clone, so a missing trace is a broken setup: fail, don't skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TRACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "traces"


def trace(name: str) -> Path:
    path = TRACES / name
    if not path.is_file():
        pytest.fail(f"trace {path} not found: shared/ must sit beside the checkout", pytrace=False)
    return path
