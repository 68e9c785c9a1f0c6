"""Trace readers, on small files derived at run time from the real traces."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpfn.simulator import TraceFormatError, load_trace
from tests.simulator.shared_traces import trace


def _head(src: Path, dst: Path, lines: int) -> Path:
    with src.open() as fh:
        dst.write_text("".join(next(fh) for _ in range(lines)))
    return dst


def test_alibaba(tmp_path: Path) -> None:
    path = _head(trace("alibaba-genai-2026-lora_request_trace.csv"), tmp_path / "a.csv", 51)
    reqs = load_trace(path)
    assert len(reqs) == 50 and reqs[0].model == "M0000"
    assert [r.time for r in reqs] == sorted(r.time for r in reqs)


def test_azure_llm(tmp_path: Path) -> None:
    path = _head(trace("azure-llm-2023-code.csv"), tmp_path / "azure-llm-2023-code.csv", 11)
    reqs = load_trace(path)
    assert len(reqs) == 10 and {r.model for r in reqs} == {"azure-llm-2023-code"}
    assert reqs[1].time - reqs[0].time == pytest.approx(0.052, abs=1e-3)


def test_azure_functions(tmp_path: Path) -> None:
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(i) for i in range(1, 1441))
    counts = ["0"] * 1440
    counts[0], counts[9] = "2", "1"
    path = tmp_path / "invocations_per_function_md.anon.d02.csv"
    path.write_text(header + "\no,app,fn,http," + ",".join(counts) + "\n")
    reqs = load_trace(path)
    assert [r.time - 86400 for r in reqs] == [0.0, 30.0, 540.0]
    assert reqs[0].model == "app/fn"


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(TraceFormatError):
        load_trace(path)
