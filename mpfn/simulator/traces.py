"""Trace readers: turn public workload traces into a time-ordered list of `Request`s.

Supported formats (detected from the CSV header):

- Alibaba GenAI 2026 request trace (`gmt_create`, `checkpoint_model_version_id`, ...):
  one row per request; the model is `checkpoint_model_version_id` (empty -> `"unknown"`).
- Azure LLM inference 2023 (`TIMESTAMP`, `ContextTokens`, `GeneratedTokens`): one row per
  request of a single model (named after the file, e.g. `azure-llm-2023-code`).
- Azure Functions 2019 per-minute invocation counts (`HashOwner, HashApp, HashFunction,
  Trigger, 1 .. 1440`): one row per function and day; a count of k in minute m becomes k
  requests spread evenly over that minute. The day index comes from a `dNN` in the file name
  (`invocations_per_function_md.anon.d03.csv` -> day 3) or `day=` when given.

Readers only parse; they never filter by time or decide anything about warming.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

UNKNOWN_MODEL = "unknown"


@dataclass(frozen=True, order=True)
class Request:
    """One inference request: when it arrived (Unix seconds) and for which model."""

    time: float
    model: str


class TraceFormatError(ValueError):
    """The file is not in a trace format mpfn can read."""


def _parse_time(text: str) -> float:
    text = text.strip()
    if "." in text:  # Azure LLM: 7 fractional digits, more than fromisoformat's 6
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def read_alibaba_genai(rows: Iterable[dict[str, str]]) -> list[Request]:
    out = [
        Request(_parse_time(r["gmt_create"]), r["checkpoint_model_version_id"] or UNKNOWN_MODEL)
        for r in rows
    ]
    return sorted(out)


def read_azure_llm(rows: Iterable[dict[str, str]], model: str) -> list[Request]:
    return sorted(Request(_parse_time(r["TIMESTAMP"]), model) for r in rows)


def read_azure_functions(rows: Iterable[dict[str, str]], day: int = 1) -> list[Request]:
    """Per-minute counts -> requests; the model is `HashApp/HashFunction`."""
    base = (day - 1) * 86400.0
    out: list[Request] = []
    for r in rows:
        model = f"{r['HashApp']}/{r['HashFunction']}"
        for minute in range(1, 1441):
            count = int(float(r.get(str(minute)) or 0))
            start = base + (minute - 1) * 60.0
            out.extend(Request(start + 60.0 * i / count, model) for i in range(count))
    return sorted(out)


def _day_from_name(path: Path) -> int:
    match = re.search(r"\.d(\d+)\.", path.name)
    return int(match.group(1)) if match else 1


def load_trace(path: str | Path, day: int | None = None) -> list[Request]:
    """Read any supported trace file, detecting its format from the header."""
    path = Path(path)
    if not path.is_file():
        raise TraceFormatError(f"{path}: no such file")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = set(reader.fieldnames or [])
        if {"gmt_create", "checkpoint_model_version_id"} <= header:
            return read_alibaba_genai(reader)
        if {"TIMESTAMP", "ContextTokens"} <= header:
            return read_azure_llm(reader, model=path.stem)
        if {"HashApp", "HashFunction", "1"} <= header:
            return read_azure_functions(reader, day if day is not None else _day_from_name(path))
    raise TraceFormatError(
        f"{path}: unknown trace format (expected the Alibaba GenAI 2026 request trace, "
        "an Azure LLM 2023 trace or Azure Functions 2019 per-minute counts)"
    )
