"""The v2 gRPC codec: raw and typed contents both ways, REST translation, status mapping,
and the committed generated module matching the proto."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from mpfn.protocol import (
    OutputTensor,
    ProtocolError,
    decode_infer_response,
    parse_infer_request,
    tensor_to_bytes,
)
from mpfn.protocol import grpc_predict_v2_pb2 as pb
from mpfn.protocol.grpc_codec import (
    CONTENTS_FIELD,
    decode_grpc_response,
    encode_grpc_response,
    grpc_response_from_rest,
    grpc_status,
    http_status,
    parse_grpc_request,
    rest_request,
)
from mpfn.protocol.response import encode_infer_response

ROOT = Path(__file__).resolve().parents[2]
ARRAYS: dict[str, npt.NDArray[Any]] = {
    "FP32": np.arange(6, dtype=np.float32).reshape(2, 3) / 3,
    "FP64": np.linspace(-1, 1, 4).reshape(2, 2),
    "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
    "INT64": np.array([-(2**40), 2**40], dtype=np.int64),
    "UINT16": np.array([0, 65535], dtype=np.uint16),
    "UINT64": np.array([2**63 + 5], dtype=np.uint64),
    "BOOL": np.array([True, False, True]),
    "BYTES": np.array([b"a", b"\x00\xffz"], dtype=object),
}


def request_of(raw: bool) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m", id="r1")
    for datatype, array in ARRAYS.items():
        tensor = msg.inputs.add(name=datatype.lower(), datatype=datatype, shape=array.shape)
        if raw:
            msg.raw_input_contents.append(tensor_to_bytes(datatype, array))
        else:
            values = getattr(tensor.contents, CONTENTS_FIELD[datatype])
            values.extend(array.ravel().tolist())
    return msg


@pytest.mark.parametrize("raw", [True, False])
def test_requests_decode_raw_and_typed_contents(raw: bool) -> None:
    parsed = parse_grpc_request(request_of(raw))
    assert parsed.id == "r1" and parsed.outputs is None
    for tensor in parsed.inputs:
        expected = ARRAYS[tensor.datatype]
        assert tensor.array.shape == expected.shape
        assert np.array_equal(tensor.array, expected)


@pytest.mark.parametrize("raw", [True, False])
def test_responses_round_trip_raw_and_typed(raw: bool) -> None:
    outputs = [OutputTensor(k.lower(), v, datatype=k) for k, v in ARRAYS.items()]
    msg = encode_grpc_response("m", "2", outputs, request_id="x", raw=raw)
    assert bool(msg.raw_output_contents) == raw
    back = decode_grpc_response(pb.ModelInferResponse.FromString(msg.SerializeToString()))
    for key, value in ARRAYS.items():
        assert np.array_equal(back[key.lower()], value)
    assert (msg.model_version, msg.id) == ("2", "x")


def test_fp16_answers_are_raw_even_when_typed_was_asked() -> None:
    half = np.array([1.5, -2.0], dtype=np.float16)
    msg = encode_grpc_response("m", None, [OutputTensor("h", half)], raw=False)
    assert msg.raw_output_contents and np.array_equal(decode_grpc_response(msg)["h"], half)


@pytest.mark.parametrize("raw", [True, False])
def test_rest_translation_both_ways(raw: bool) -> None:
    msg = request_of(raw)
    body, length = rest_request(msg)
    rest = parse_infer_request(body, str(length))
    for tensor in rest.inputs:
        assert np.array_equal(tensor.array, ARRAYS[tensor.datatype])
    outputs = [OutputTensor(k.lower(), v, binary=True, datatype=k) for k, v in ARRAYS.items()]
    answer, header = encode_infer_response("m", "1", outputs, request_id="r1")
    grpc_answer = grpc_response_from_rest(answer, None if header is None else str(header), raw=raw)
    assert bool(grpc_answer.raw_output_contents) == raw
    assert grpc_answer.id == "r1"
    back = decode_grpc_response(grpc_answer)
    reference = decode_infer_response(answer, None if header is None else str(header))
    for name, array in reference.outputs.items():
        assert np.array_equal(back[name], array)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.raw_input_contents.append(b"extra"), "raw_input_contents"),
        (lambda m: m.raw_input_contents.__setitem__(0, b"abc"), "expected 24"),
        (lambda m: setattr(m.inputs[0], "datatype", "FP33"), "unknown datatype"),
        (lambda m: m.ClearField("inputs"), "at least one input"),
    ],
)
def test_bad_requests_name_what_is_wrong(mutate: object, message: str) -> None:
    msg = request_of(True)
    mutate(msg)  # type: ignore[operator]
    with pytest.raises(ProtocolError, match=message) as info:
        parse_grpc_request(msg)
    assert info.value.status == 400


def test_typed_contents_must_match_the_shape_and_range() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[2]).contents.fp32_contents.extend([1.0])
    with pytest.raises(ProtocolError, match="shape holds 2 elements"):
        parse_grpc_request(msg)
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="INT8", shape=[1]).contents.int_contents.extend([300])
    with pytest.raises(ProtocolError, match="out of range"):
        parse_grpc_request(msg)
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP16", shape=[1]).contents.fp32_contents.extend([1.0])
    with pytest.raises(ProtocolError, match="raw contents"):
        parse_grpc_request(msg)


def test_status_codes_map_both_ways() -> None:
    assert grpc_status(404) == grpc.StatusCode.NOT_FOUND
    assert grpc_status(400) == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_status(401) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_status(503) == grpc.StatusCode.UNAVAILABLE
    assert grpc_status(504) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert grpc_status(500) == grpc.StatusCode.INTERNAL
    for code in (404, 400, 401, 403, 503, 504):
        assert http_status(grpc_status(code)) == code


def test_messages_coexist_with_tritons_own_inference_package() -> None:
    """tritonclient.grpc declares the same `inference.*` names in the default pool; ours
    live in a pool of their own, so both load in one process (a process of its own here:
    KServe's module, which other tests import, clashes with Triton's)."""
    script = (
        "import sys; from tritonclient.grpc import service_pb2 as t; "
        "from mpfn.protocol import grpc_predict_v2_pb2 as pb; "
        "raw = sys.stdin.buffer.read(); "
        "assert pb.ModelInferRequest.FromString(t.ModelInferRequest.FromString(raw)"
        ".SerializeToString()).SerializeToString() == raw"
    )
    raw = request_of(True).SerializeToString()
    subprocess.run([sys.executable, "-c", script], input=raw, check=True, cwd=ROOT)


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="no grpcio-tools")
def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "gen_grpc_stubs"), str(tmp_path)], check=True)
    for name in ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi"):
        committed = (ROOT / "mpfn" / "protocol" / name).read_text()
        assert (tmp_path / name).read_text() == committed, f"{name}: run scripts/gen_grpc_stubs"
