"""The v2 codec: round trips for every datatype, and precise errors for bad bodies."""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpfn.documents import TensorSpec
from mpfn.protocol import (
    DATATYPES,
    OutputTensor,
    ProtocolError,
    bf16_round,
    datatype_of,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
    numpy_dtype,
    parse_infer_request,
    select_outputs,
    tensor_from_bytes,
    tensor_to_bytes,
    validate_inputs,
)

NUMERIC = sorted(DATATYPES - {"BYTES"})
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)

# bits of a float dtype, by its size in bytes
FLOAT_WIDTHS: dict[int, Literal[16, 32, 64]] = {2: 16, 4: 32, 8: 64}


@st.composite
def tensors(draw: st.DrawFn, datatype: str, finite: bool = False) -> np.ndarray:
    shape = draw(shapes)
    if datatype == "BYTES":
        count = int(np.prod(shape))
        items = draw(st.lists(st.binary(max_size=12), min_size=count, max_size=count))
        out = np.empty(count, dtype=object)
        out[:] = items
        return out.reshape(shape)
    if datatype == "BF16":
        bits = draw(hnp.arrays(np.uint16, shape))
        arr = (bits.astype(np.uint32) << 16).view(np.float32)
        if finite:
            arr = np.where(np.isfinite(arr), arr, np.float32(0))
        return arr
    elements = None
    if numpy_dtype(datatype).kind == "f":
        elements = st.floats(
            width=FLOAT_WIDTHS[numpy_dtype(datatype).itemsize],
            allow_nan=not finite,
            allow_infinity=not finite,
        )
    return draw(hnp.arrays(numpy_dtype(datatype), shape, elements=elements))


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    if a.dtype == object:
        assert [bytes(x) for x in a.ravel()] == [bytes(x) for x in b.ravel()]
    else:
        assert a.dtype == b.dtype
        assert a.tobytes() == b.tobytes()  # bit-exact, NaN payloads and -0.0 included


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_binary_tensor_round_trip(datatype: str, data: st.DataObject) -> None:
    array = data.draw(tensors(datatype))
    raw = tensor_to_bytes(datatype, array)
    back = tensor_from_bytes(datatype, raw, array.size).reshape(array.shape)
    assert_same(back, array)


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
@settings(max_examples=25, deadline=None)
@given(data=st.data(), binary=st.booleans())
def test_request_round_trip(datatype: str, data: st.DataObject, binary: bool) -> None:
    array = data.draw(tensors(datatype, finite=not binary))
    if not binary and datatype == "BYTES":
        array = (
            np.vectorize(lambda b: b.hex().encode(), otypes=[object])(array)
            if array.size
            else array
        )
    other = np.arange(3, dtype=np.int32)
    body, length = encode_infer_request(
        {"t": array, "o": other}, binary=binary, datatypes={"t": datatype}, request_id="r"
    )
    request = parse_infer_request(body, None if length is None else str(length))
    assert request.id == "r"
    assert [(i.name, i.datatype, i.shape) for i in request.inputs] == [
        ("t", datatype, array.shape),
        ("o", "INT32", (3,)),
    ]
    assert_same(request.inputs[0].array, array)
    assert_same(request.inputs[1].array, other)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    datatype=st.sampled_from(sorted(DATATYPES)),
    binary=st.booleans(),
)
def test_response_round_trip(data: st.DataObject, datatype: str, binary: bool) -> None:
    array = data.draw(tensors(datatype, finite=not binary))
    if not binary and datatype == "BYTES":
        array = (
            np.vectorize(lambda b: b.hex().encode(), otypes=[object])(array)
            if array.size
            else array
        )
    outputs = [
        OutputTensor("a", array, binary=binary, datatype=datatype),
        OutputTensor("b", np.array([[1.5, 2.5]], np.float64), binary=not binary),
    ]
    body, length = encode_infer_response("m", "3", outputs, request_id="id-1")
    assert length is not None  # one of the two outputs is binary
    response = decode_infer_response(body, str(length))
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "id-1")
    assert response.datatypes == {"a": datatype, "b": "FP64"}
    assert_same(response.outputs["a"], array)
    assert_same(response.outputs["b"], np.array([[1.5, 2.5]], np.float64))


def test_all_json_response_has_no_header_length() -> None:
    body, length = encode_infer_response(
        "m", None, [OutputTensor("y", np.ones((2, 2), np.float32))]
    )
    assert length is None
    assert json.loads(body) == {
        "model_name": "m",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 1.0, 1.0, 1.0]}
        ],
    }


def test_nested_json_data_and_bool() -> None:
    body = {
        "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
            {"name": "b", "shape": [2], "datatype": "BOOL", "data": [True, False]},
            {"name": "s", "shape": [1, 2], "datatype": "BYTES", "data": [["hé", ""]]},
        ]
    }
    request = parse_infer_request(json.dumps(body).encode())
    np.testing.assert_array_equal(request.inputs[0].array, [[1, 2], [3, 4]])
    assert request.inputs[0].array.dtype == np.float32
    assert request.inputs[1].array.tolist() == [True, False]
    assert request.inputs[2].array.tolist() == [["hé".encode(), b""]]


def test_datatype_of_and_bf16() -> None:
    assert datatype_of(np.zeros(1, np.float32)) == "FP32"
    assert datatype_of(np.array(["a"])) == "BYTES"
    assert datatype_of(np.zeros(1, np.bool_)) == "BOOL"
    assert bf16_round(np.float32(1.0 + 2**-10)).item() == 1.0


def x_input(**over: Any) -> dict[str, Any]:
    entry = {"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.0] * 16}
    entry.update(over)
    return entry


def error_of(body: bytes | dict[str, Any], header: str | None = None) -> ProtocolError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ProtocolError) as info:
        parse_infer_request(raw, header)
    assert info.value.status == 400
    return info.value


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [x_input(shape=[2, 16])]}, "input 'x': shape holds 32 elements, data has 16"),
        (
            {"inputs": [x_input(shape=[1, -1])]},
            "input 'x': shape must be a list of non-negative integers, got [1, -1]",
        ),
        (
            {"inputs": [x_input(datatype="INT8", data=[300] * 16)]},
            "input 'x': value out of range for INT8",
        ),
        (
            {"inputs": [x_input(datatype="INT64", data=[1.5] * 16)]},
            "input 'x': INT64 data must be integers",
        ),
        (
            {"inputs": [x_input(datatype="BOOL", data=[1] * 16)]},
            "input 'x': BOOL data must be booleans",
        ),
        (
            {"inputs": [x_input(data=[[1, 2], [3]])]},
            "input 'x': data is not a rectangular array of numbers",
        ),
        ({"inputs": [x_input(), x_input()]}, "input 'x' appears more than once"),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]},
            "input 'x' has neither 'data' nor binary_data_size",
        ),
        (
            {"inputs": [x_input(parameters={"binary_data_size": 64})]},
            "input 'x' has both 'data' and parameters.binary_data_size",
        ),
        (
            {"inputs": [x_input()], "parameters": {"binary_data_output": "yes"}},
            "parameters.binary_data_output must be true or false",
        ),
        (
            {"inputs": [x_input()], "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]},
            "output 'y': parameters.binary_data must be a boolean",
        ),
        ({"inputs": [x_input()], "id": 5}, "'id' must be a string"),
        ({"inputs": [{"shape": [1]}]}, "each input needs a non-empty string 'name'"),
    ],
)
def test_parse_errors(body: dict[str, Any], message: str) -> None:
    assert error_of(body).message == message


def test_binary_framing_errors() -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 16],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 60},
                }
            ]
        }
    ).encode()
    assert (
        error_of(head + b"\0" * 60, str(len(head))).message
        == "binary data for input 'x' is 60 bytes, expected 128"
    )
    assert error_of(head, None).message.startswith(
        "input 'x' has binary_data_size but the request has no"
    )

    body, length = encode_infer_request({"x": np.ones((2, 16), np.float32)})
    assert error_of(body + b"extra", str(length)).message == (
        "the request has 133 bytes of binary data after the inference header "
        "but its inputs declare 128"
    )
    assert (
        error_of(body, "x1").message
        == "malformed inference header: Inference-Header-Content-Length is 'x1', not an integer"
    )
    assert error_of(body, str(len(body) + 1)).message.startswith(
        "malformed inference header: Inference-Header-Content-Length is"
    )
    assert error_of(body, "5").message.startswith("malformed inference header: ")


def test_bytes_framing_errors() -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "s",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": 7},
                }
            ]
        }
    ).encode()
    framed = (3).to_bytes(4, "little") + b"abc"
    assert (
        error_of(head + framed, str(len(head))).message
        == "binary data for BYTES tensor 's' ends inside element 1's length"
    )
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "s",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": 9},
                }
            ]
        }
    ).encode()
    assert (
        error_of(head + framed + b"zz", str(len(head))).message
        == "binary data for BYTES tensor 's' has 2 bytes after its 1 elements"
    )


def test_validate_against_specs() -> None:
    specs = [
        TensorSpec(name="x", datatype="FP32", shape=[-1, 16]),
        TensorSpec(name="m", datatype="INT64", shape=[3]),
    ]
    ok = parse_infer_request(
        json.dumps(
            {
                "inputs": [
                    x_input(shape=[1, 16]),
                    {"name": "m", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]},
                ]
            }
        ).encode()
    )
    feed = validate_inputs(ok, specs)
    assert feed["x"].shape == (1, 16) and feed["m"].dtype == np.int64

    def problem(inputs: list[dict[str, Any]]) -> str:
        with pytest.raises(ProtocolError) as info:
            validate_inputs(parse_infer_request(json.dumps({"inputs": inputs}).encode()), specs)
        return info.value.message

    m = {"name": "m", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]}
    assert (
        problem([x_input(datatype="INT64", data=[0] * 16), m])
        == "input 'x': expected datatype FP32, got INT64"
    )
    assert (
        problem([x_input(shape=[2, 15], data=[0] * 30), m])
        == "input 'x': shape [2,15] does not match [-1,16]"
    )
    assert problem([x_input()]) == "missing input 'm'"
    assert problem([x_input(), m, {**m, "name": "q"}]) == "unknown input 'q' (model inputs: x, m)"


def test_select_outputs() -> None:
    plain = parse_infer_request(
        json.dumps({"inputs": [x_input()], "parameters": {"binary_data_output": True}}).encode()
    )
    assert [(o.name, o.binary) for o in select_outputs(plain, ["y", "z"])] == [
        ("y", True),
        ("z", True),
    ]
    some = parse_infer_request(
        json.dumps(
            {
                "inputs": [x_input()],
                "parameters": {"binary_data_output": True},
                "outputs": [{"name": "z", "parameters": {"binary_data": False}}],
            }
        ).encode()
    )
    assert [(o.name, o.binary) for o in select_outputs(some, ["y", "z"])] == [("z", False)]
    with pytest.raises(ProtocolError, match="unknown output 'q' \\(model outputs: y, z\\)"):
        select_outputs(
            parse_infer_request(
                json.dumps({"inputs": [x_input()], "outputs": [{"name": "q"}]}).encode()
            ),
            ["y", "z"],
        )


def test_non_utf8_bytes_cannot_go_out_as_json() -> None:
    with pytest.raises(ProtocolError, match="output 's' holds bytes that are not UTF-8"):
        encode_infer_response("m", None, [OutputTensor("s", np.array([b"\xff"], dtype=object))])
