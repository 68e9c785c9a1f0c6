"""Fuzzing the state-document parsers: any stored bytes give a document or InvalidDocument.

Routers and workers read `models/`, `pools/`, `policies/` and `stats/` documents that any
writer with store access may have corrupted. `parse_document` must reject every invalid
one with `InvalidDocument` naming the key (so readers keep their last good copy), and
never raise anything else. Inputs: arbitrary bytes, arbitrary JSON, and objects using each
schema's own field names with random values (which reach the field validators).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from mpfn.documents import ModelVersion, Policy, Pool
from mpfn.routing import PoolStatsDocument
from mpfn.state import InvalidDocument, parse_document

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS: dict[str, type[BaseModel]] = {
    "models/m/1.json": ModelVersion,
    "pools/p.json": Pool,
    "policies/p.json": Policy,
    "stats/p.json": PoolStatsDocument,
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(["onnx", "cpu", "aws", "local", "http://127.0.0.1:1", "sha256:" + "a" * 64]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


def field_names(cls: type[BaseModel]) -> list[str]:
    """Every field name of `cls` and of the models nested in it."""
    names: set[str] = set()
    pending: list[Any] = [cls]
    while pending:
        model = pending.pop()
        for name, info in model.model_fields.items():
            names.add(name)
            for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    pending.append(arg)
    return sorted(names)


def schema_shaped(cls: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(field_names(cls)), json_values, max_size=8)


def only_invalid_document(key: str, body: bytes, cls: type[BaseModel]) -> None:
    try:
        doc = parse_document(key, body, cls)
    except InvalidDocument as exc:
        assert str(exc).startswith(f"{key}: invalid: "), exc
        return
    assert isinstance(doc, cls)


@FUZZ
@given(key=st.sampled_from(sorted(KINDS)), body=st.binary(max_size=256))
@example(key="pools/p.json", body=b"")
@example(key="pools/p.json", body=b"\xef\xbb\xbf{}")
@example(key="models/m/1.json", body=b'{"name": "m", "version": "1"' + b"[" * 5000)
def test_arbitrary_bytes_are_documents_or_invalid(key: str, body: bytes) -> None:
    only_invalid_document(key, body, KINDS[key])


@FUZZ
@given(key=st.sampled_from(sorted(KINDS)), value=json_values)
def test_arbitrary_json_is_a_document_or_invalid(key: str, value: Any) -> None:
    only_invalid_document(key, json.dumps(value).encode(), KINDS[key])


@FUZZ
@given(data=st.data(), key=st.sampled_from(sorted(KINDS)))
@example(data=None, key="policies/p.json")
def test_schema_shaped_objects_are_documents_or_invalid(data: Any, key: str) -> None:
    cls = KINDS[key]
    if data is None:  # weights that sum to 0, a policy falling back to itself
        doc: dict[str, Any] = {"name": "p", "version_weights": {"1": 0}, "fallbacks": ["p"]}
    else:
        doc = data.draw(schema_shaped(cls))
    only_invalid_document(key, json.dumps(doc).encode(), cls)


@FUZZ
@given(
    weights=st.dictionaries(
        st.text(max_size=6), st.floats(allow_nan=False, allow_infinity=False), max_size=4
    ),
    fallbacks=st.lists(st.text(max_size=4), max_size=3),
    timeout=scalars,
)
def test_policy_validators_raise_only_invalid_document(
    weights: dict[str, float], fallbacks: list[str], timeout: Any
) -> None:
    doc = {"name": "p", "version_weights": weights, "fallbacks": fallbacks, "timeout_ms": timeout}
    only_invalid_document("policies/p.json", json.dumps(doc).encode(), Policy)


@FUZZ
@given(
    nonfinite=st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"]),
    field=st.sampled_from(["cost_per_hour", "memory_mb", "capacity"]),
)
def test_non_finite_numbers_are_documents_or_invalid(nonfinite: bytes, field: str) -> None:
    body = b'{"id": "p", "cloud": "local", "endpoint": "http://127.0.0.1:1", "%s": %s}' % (
        field.encode(),
        nonfinite,
    )
    only_invalid_document("pools/p.json", body, Pool)
