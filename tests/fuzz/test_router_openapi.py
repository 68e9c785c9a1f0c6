"""Schemathesis against the router's own OpenAPI schema, with real workers behind it.

A real router process serves `/openapi.json`; two real ORT workers serve the demo model
(pushed as an OCI artifact and registered in a LocalStore). Schemathesis generates
requests for every documented operation (path parameters, bodies, headers) and checks each
answer: never a 5xx, and status code, content type, headers and body conform to the
schema. Generated model names are mapped onto the registered model half of the time, so
infer requests really reach the workers instead of stopping at a 404; well-formed JSON and
binary-tensor requests are checked too. No OpenAI-compatible pool is registered, so the
OpenAI routes are exercised for their refusals (400/404) only.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mpfn.protocol import encode_infer_request
from mpfn.store import LocalStore
from tests.factories import pool
from tests.reliability.stack import DEMO_BODY, upsert
from tests.servers.mpfn_procs import publish_demo, start_router, start_worker
from tests.servers.process import Proc

EXAMPLES = 25  # per operation and generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def map_path_parameters(context: Any, path_parameters: dict[str, Any]) -> dict[str, Any]:
    """Point about half of the generated model names at the registered model."""
    out = dict(path_parameters or {})
    for key in ("model_name", "model_id"):
        if key in out and zlib.crc32(repr(out[key]).encode()) % 2 == 0:
            out[key] = "demo"
            if "model_version" in out and zlib.crc32(repr(out["model_version"]).encode()) % 2:
                out["model_version"] = "1"
    return out


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    root = tmp_path_factory.mktemp("openapi")
    store = LocalStore(root / "state")
    publish_demo(store, root)
    procs: list[Proc] = []
    try:
        for name in ("w1", "w2"):
            procs.append(start_worker(store, root / "logs", name))
            upsert(store, [pool(name, procs[-1].url)])
        procs.append(start_router(store.url, root / "logs"))
        yield procs[-1]
    finally:
        for proc in reversed(procs):
            proc.stop()


@pytest.fixture(scope="module")
def router_schema(router: Proc) -> Any:
    schema = schemathesis.openapi.from_url(f"{router.url}/openapi.json")
    schema.config.update(base_url=router.url)
    schema.hook(map_path_parameters)
    return schema


@dataclass
class Run:
    """Every failed check, and who answered each request (status, `x-mpfn-pool`)."""

    failures: list[str] = field(default_factory=list)
    answers: list[tuple[str, int, str]] = field(default_factory=list)

    def call(self, case: Any, what: str) -> Any:
        try:
            response = case.call_and_validate(checks=CHECKS, timeout=30)
        except FailureGroup as exc:
            for failure in exc.exceptions:
                self.failures.append(f"{what}: {failure.title}: {failure.message}")
            return None
        pool = response.headers.get("x-mpfn-pool") or [""]  # header name -> list of values
        self.answers.append((case.operation.label, response.status_code, pool[0]))
        return response


def run_operation(operation: Any, mode: GenerationMode, run: Run) -> None:
    """Generate cases for one operation; record every failed check instead of stopping."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def generated(case: Any) -> None:
        run.call(case, f"{mode.value} {operation.label}")

    try:
        generated()
    except Unsatisfiable:
        # An operation with no parameters and no body has no invalid input to generate.
        assert mode is GenerationMode.NEGATIVE, operation.label


def valid_infer_cases(operation: Any) -> list[Any]:
    """Well-formed requests for the demo model: JSON, and binary tensors both ways."""
    params = {"model_name": "demo"}
    if "{model_version}" in operation.path:
        params["model_version"] = "1"
    x = np.full((2, 16), 0.5, dtype=np.float32)
    binary, length = encode_infer_request({"x": x}, binary=True, binary_output=True)
    return [
        operation.Case(path_parameters=params, body=DEMO_BODY, media_type="application/json"),
        operation.Case(
            path_parameters=params,
            body=binary,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(length)},
        ),
    ]


def test_router_answers_conform_to_its_schema(router_schema: Any) -> None:
    run = Run()
    operations = 0
    for result in router_schema.get_all_operations():
        if isinstance(result, Err):
            run.failures.append(f"schema error: {result.err()}")
            continue
        operation = result.ok()
        operations += 1
        if operation.path.endswith("/infer"):
            for case in valid_infer_cases(operation):
                response = run.call(case, f"valid {operation.label}")
                assert response is None or response.status_code == 200, response.text
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run_operation(operation, mode, run)
    assert operations >= 14
    distinct = sorted({f.split("\n")[0][:300] for f in run.failures})
    assert not run.failures, f"{len(run.failures)} failures:\n" + "\n".join(distinct)
    # Generated requests got past the router to the workers, not only to its 404s.
    tally = Counter((label, status, pool in ("w1", "w2")) for label, status, pool in run.answers)
    for label in ("POST /v2/models/{model_name}/infer",
                  "POST /v2/models/{model_name}/versions/{model_version}/infer"):  # fmt: skip
        reached = sum(n for (op, _, worker), n in tally.items() if op == label and worker)
        assert reached >= 10, sorted(tally.items())


def test_schema_documents_every_route(router_schema: Any, router: Proc) -> None:
    """The routes README and docs/router.md list are in the schema (nothing undocumented)."""
    paths = set(router_schema.raw_schema["paths"])
    assert {
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/versions/{model_version}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/versions/{model_version}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
        "/v1/models",
        "/v1/models/{model_id}",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
    } <= paths
    assert not any(p.startswith("/v2/repository") for p in paths)
