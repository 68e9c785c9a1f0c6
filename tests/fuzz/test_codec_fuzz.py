"""Fuzzing the v2 codec: whatever bytes and header lengths arrive, only ProtocolError escapes.

`parse_infer_request` is what every worker runs on untrusted request bodies (JSON or the
binary-tensor extension with `Inference-Header-Content-Length`); `decode_infer_response`
is what adapters run on backend answers. Both must turn any malformed input into a
`ProtocolError` (a 4xx/5xx for the client), never another exception, and must not allocate
memory in proportion to a declared shape the body does not back. Inputs come from three
strategies: raw bytes, structurally plausible v2 documents with random binary tails, and
valid requests with one field mutated.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpfn.protocol import (
    DATATYPES,
    ProtocolError,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
    parse_infer_request,
)
from mpfn.protocol.response import OutputTensor

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Header lengths as clients might send them: absent, numbers in and out of range, junk.
header_lengths = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=0, max_value=4096).map(lambda n: str(n).encode()),
    st.text(max_size=12),
    st.binary(max_size=12),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
datatypes = st.one_of(st.sampled_from(sorted(DATATYPES)), st.text(max_size=6), json_scalars)
dims = st.one_of(
    st.integers(min_value=-3, max_value=8),
    st.integers(min_value=-(2**64), max_value=2**64),
    json_scalars,
)
shapes = st.one_of(st.lists(dims, max_size=4), json_values)


@st.composite
def tensor_entries(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if draw(st.booleans()):
        entry["name"] = draw(st.one_of(st.text(max_size=4), json_scalars))
    if draw(st.booleans()):
        entry["datatype"] = draw(datatypes)
    if draw(st.booleans()):
        entry["shape"] = draw(shapes)
    choice = draw(st.integers(0, 3))
    if choice in (0, 2):
        entry["data"] = draw(json_values)
    if choice in (1, 2):
        size = draw(st.one_of(st.integers(-8, 256), json_scalars, st.integers(-(2**70), 2**70)))
        entry["parameters"] = {"binary_data_size": size}
    if choice == 3 and draw(st.booleans()):
        entry["parameters"] = draw(json_values)
    return entry


@st.composite
def v2_bodies(draw: st.DrawFn) -> tuple[bytes, int | str | None]:
    """A v2-looking JSON header, a random binary tail and a header length to match (or not)."""
    doc: dict[str, Any] = {"inputs": draw(st.lists(tensor_entries(), max_size=3))}
    if draw(st.booleans()):
        doc["outputs"] = draw(st.one_of(st.lists(tensor_entries(), max_size=2), json_values))
    if draw(st.booleans()):
        doc["parameters"] = draw(st.one_of(st.just({"binary_data_output": True}), json_values))
    if draw(st.booleans()):
        doc["id"] = draw(json_scalars)
    header = json.dumps(doc).encode()
    tail = draw(st.binary(max_size=64))
    length: int | str | None = draw(
        st.one_of(st.just(len(header)), st.none(), st.integers(-2, len(header) + len(tail) + 2))
    )
    return header + tail, length


def as_header(value: Any) -> str | bytes | None:
    """Header values reach the codec as text (ASGI gives bytes, httpx gives str)."""
    return str(value) if isinstance(value, int) else value


def parse_only_protocol_errors(body: bytes, header_length: Any) -> None:
    header_length = as_header(header_length)
    try:
        request = parse_infer_request(body, header_length)
    except ProtocolError as exc:
        assert 400 <= exc.status < 600 and exc.message
        return
    for tensor in request.inputs:  # what parsed is consistent with what was declared
        assert tensor.array.shape == tensor.shape


@FUZZ
@given(body=st.binary(max_size=512), header_length=header_lengths)
@example(body=b"", header_length=None)
@example(body=b"{}", header_length="-1")
@example(body=b'{"inputs": []}', header_length=b"\xff")
def test_arbitrary_bytes_raise_only_protocol_errors(body: bytes, header_length: Any) -> None:
    parse_only_protocol_errors(body, header_length)


def framed(header: dict[str, Any], tail: bytes) -> tuple[bytes, int]:
    head = json.dumps(header).encode()
    return head + tail, len(head)


def one_input(**entry: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", **entry}]}


@FUZZ
@given(case=v2_bodies())
# A shape of 2**64 elements backed by 16 bytes: refused without allocating it.
@example(
    case=framed(
        one_input(datatype="FP32", shape=[2**32, 2**32], parameters={"binary_data_size": 16}),
        b"\0" * 16,
    )
)
# A BYTES element whose 4-byte length prefix points far past the end of the data.
@example(
    case=framed(
        one_input(datatype="BYTES", shape=[3], parameters={"binary_data_size": 6}),
        b"\xff\xff\xff\xff\0\0",
    )
)
# JSON data whose nesting does not match the declared shape.
@example(case=framed(one_input(datatype="INT8", shape=[2, 2], data=[[1, 2], [3]]), b""))
def test_v2_shaped_bodies_raise_only_protocol_errors(case: tuple[bytes, Any]) -> None:
    parse_only_protocol_errors(*case)


@st.composite
def mutated_requests(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """A valid binary request for the demo model's shape, then one byte or field changed."""
    rows = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(["FP32", "INT64", "BYTES", "BOOL", "FP16", "BF16"]))
    if dtype == "BYTES":
        array = np.array([b"ab"] * (rows * 2), dtype=object).reshape(rows, 2)
    elif dtype == "BOOL":
        array = np.ones((rows, 2), dtype=bool)
    elif dtype == "INT64":
        array = np.arange(rows * 2, dtype=np.int64).reshape(rows, 2)
    else:
        array = np.zeros((rows, 2), dtype=np.float32)
    body, length = encode_infer_request(
        {"x": array}, binary=True, datatypes={"x": dtype}, binary_output=True
    )
    data = bytearray(body)
    if data and draw(st.booleans()):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] if draw(st.booleans()) else data + draw(st.binary(max_size=8))
    return bytes(data), draw(st.one_of(st.just(length), st.integers(-1, len(data) + 1)))


@FUZZ
@given(case=mutated_requests())
def test_mutated_binary_requests_raise_only_protocol_errors(case: tuple[bytes, Any]) -> None:
    parse_only_protocol_errors(*case)


def decode_only_protocol_errors(body: bytes, header_length: Any) -> None:
    header_length = as_header(header_length)
    try:
        decode_infer_response(body, header_length)
    except ProtocolError as exc:
        assert 400 <= exc.status < 600 and exc.message


@FUZZ
@given(body=st.binary(max_size=512), header_length=header_lengths)
def test_arbitrary_response_bytes_raise_only_protocol_errors(
    body: bytes, header_length: Any
) -> None:
    decode_only_protocol_errors(body, header_length)


@FUZZ
@given(case=v2_bodies())
def test_v2_shaped_responses_raise_only_protocol_errors(case: tuple[bytes, Any]) -> None:
    body, length = case
    # The same documents, with `outputs` where responses carry them.
    doc_end = length if isinstance(length, int) and 0 <= length <= len(body) else len(body)
    decode_only_protocol_errors(body.replace(b'"inputs"', b'"outputs"', 1), length)
    decode_only_protocol_errors(body[:doc_end], None)


@st.composite
def mutated_responses(draw: st.DrawFn) -> tuple[bytes, int | None]:
    rows = draw(st.integers(1, 3))
    binary = draw(st.booleans())
    payload, length = encode_infer_response(
        "demo", "1", [OutputTensor("y", np.zeros((rows, 4), dtype=np.float32), binary)]
    )
    data = bytearray(payload)
    at = draw(st.integers(0, len(data) - 1))
    data[at] = draw(st.integers(0, 255))
    return bytes(data), draw(st.one_of(st.just(length), st.integers(-1, len(data) + 1)))


@FUZZ
@given(case=mutated_responses())
def test_mutated_responses_raise_only_protocol_errors(case: tuple[bytes, Any]) -> None:
    decode_only_protocol_errors(*case)
