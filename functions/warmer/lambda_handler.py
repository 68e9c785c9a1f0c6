"""AWS Lambda entry point of the warmer (`mpfn.functions.warmer.lambda_handler.handler`).

EventBridge Scheduler invokes it on a rate; any event runs one warmer pass against
`MPFN_STATE`, and `{"dry_run": true}` computes the plan without applying or writing it.
The handler returns the run's summary and never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mpfn.functions.warmer.entry import run_from_env

logging.getLogger().setLevel(logging.INFO)

Handler = Callable[[Any, Any], dict[str, Any]]


def event_name(event: object) -> str:
    if isinstance(event, dict):
        return str(event.get("detail-type") or event.get("source") or "invoke")
    return "invoke"


def make_handler(state: str | None = None) -> Handler:
    """A handler running the warmer on `state` (None: `MPFN_STATE` at each invocation)."""

    def handle(event: Any, context: Any) -> dict[str, Any]:
        dry_run = isinstance(event, dict) and event.get("dry_run") is True
        return {"event": event_name(event), **run_from_env(state=state, apply=not dry_run)}

    return handle


handler: Handler = make_handler()
