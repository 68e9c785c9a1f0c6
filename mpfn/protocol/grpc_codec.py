"""Open Inference Protocol v2 over gRPC: tensors between protobuf messages, numpy and REST.

Decodes a `ModelInferRequest` (typed `contents` or `raw_input_contents`) into the same
`InferRequest` the REST codec makes, encodes outputs as a `ModelInferResponse`, and
translates between the gRPC messages and REST v2 bodies (binary-tensor extension) for a
router whose pool speaks only REST. Errors are `ProtocolError(400, ...)` naming the tensor.
Status codes map between HTTP and gRPC here too. Pure: no I/O, no servers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from mpfn.protocol import grpc_predict_v2_pb2 as pb
from mpfn.protocol.datatypes import (
    DATATYPES,
    WIRE_DTYPES,
    datatype_of,
    element_size,
    numpy_dtype,
    tensor_from_bytes,
    tensor_to_bytes,
)
from mpfn.protocol.errors import ProtocolError
from mpfn.protocol.request import InferInput, InferRequest, RequestedOutput
from mpfn.protocol.response import OutputTensor, decode_infer_response
from mpfn.protocol.tensors import dumps, element_count, format_shape

SERVICE = "inference.GRPCInferenceService"
#: The typed `contents` field holding each datatype (FP16 and BF16 travel only raw).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_TO_GRPC: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
    507: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def grpc_status(http_status: int) -> grpc.StatusCode:
    """The gRPC status code answering what HTTP says with `http_status`."""
    code = _TO_GRPC.get(http_status)
    if code is not None:
        return code
    return grpc.StatusCode.FAILED_PRECONDITION if http_status < 500 else grpc.StatusCode.INTERNAL


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status answering what gRPC says with `code` (500 for the rest)."""
    return _TO_HTTP.get(code, 500)


# -- requests ------------------------------------------------------------------------------


def parameters_of(params: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """A protobuf parameter map as plain values (bool, int or str)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = None if which is None else getattr(value, which)
    return out


def set_parameters(target: Any, params: Mapping[str, Any]) -> None:
    """Fill a protobuf parameter map from plain values (others are left out)."""
    for key, value in params.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        elif isinstance(value, str):
            target[key].string_param = value


def _shape(kind: str, name: str, dims: Iterable[int]) -> tuple[int, ...]:
    shape = tuple(dims)
    if any(d < 0 for d in shape):
        raise ProtocolError(
            400, f"{kind} '{name}': shape must be non-negative, got {format_shape(shape)}"
        )
    return shape


def _datatype(kind: str, name: str, datatype: str) -> str:
    if datatype not in DATATYPES:
        raise ProtocolError(
            400,
            f"{kind} '{name}': unknown datatype {datatype!r} "
            f"(one of {', '.join(sorted(DATATYPES))})",
        )
    return datatype


def raw_tensor(kind: str, name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> Any:
    """An array of `shape` from raw little-endian bytes (BYTES: length-prefixed)."""
    count = element_count(shape)
    size = element_size(datatype)
    if size is not None and len(raw) != count * size:
        raise ProtocolError(
            400,
            f"raw contents of {kind} '{name}' are {len(raw)} bytes, expected {count * size} "
            f"({datatype} {format_shape(shape)})",
        )
    return tensor_from_bytes(datatype, raw, count, name).reshape(shape)


def typed_tensor(
    kind: str, name: str, datatype: str, shape: tuple[int, ...], contents: pb.InferTensorContents
) -> Any:
    """An array of `shape` from typed `contents` (the field matching `datatype`)."""
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise ProtocolError(400, f"{kind} '{name}': {datatype} data must be sent as raw contents")
    values = getattr(contents, field)
    count = element_count(shape)
    if len(values) != count:
        raise ProtocolError(
            400, f"{kind} '{name}': shape holds {count} elements, {field} has {len(values)}"
        )
    if datatype == "BYTES":
        flat = np.empty(count, dtype=object)
        flat[:] = list(values)
        return flat.reshape(shape)
    wide = np.array(values, dtype=_WIDE.get(field))
    if datatype in ("INT8", "INT16", "UINT8", "UINT16") and wide.size:
        info = np.iinfo(WIRE_DTYPES[datatype])  # type: ignore[type-var]
        if int(wide.min()) < info.min or int(wide.max()) > info.max:
            raise ProtocolError(400, f"{kind} '{name}': value out of range for {datatype}")
    return wide.astype(numpy_dtype(datatype), copy=False).reshape(shape)


_WIDE: dict[str, Any] = {
    "bool_contents": np.bool_,
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}


def parse_grpc_request(msg: pb.ModelInferRequest) -> InferRequest:
    """The `InferRequest` a `ModelInferRequest` asks for (checks its own consistency)."""
    if not msg.inputs:
        raise ProtocolError(400, "the request must have at least one input")
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise ProtocolError(
            400,
            f"the request has {len(msg.inputs)} inputs but {len(raw)} raw_input_contents",
        )
    inputs: list[InferInput] = []
    seen: set[str] = set()
    for index, entry in enumerate(msg.inputs):
        name = entry.name
        if not name:
            raise ProtocolError(400, "each input needs a non-empty name")
        if name in seen:
            raise ProtocolError(400, f"input '{name}' appears more than once")
        seen.add(name)
        datatype = _datatype("input", name, entry.datatype)
        shape = _shape("input", name, entry.shape)
        if raw:
            if entry.HasField("contents"):
                raise ProtocolError(
                    400, f"input '{name}' has contents although the request uses raw contents"
                )
            array = raw_tensor("input", name, datatype, shape, raw[index])
        else:
            array = typed_tensor("input", name, datatype, shape, entry.contents)
        inputs.append(InferInput(name, datatype, shape, array))
    outputs: list[RequestedOutput] = []
    for out in msg.outputs:
        if not out.name:
            raise ProtocolError(400, "each requested output needs a non-empty name")
        if any(o.name == out.name for o in outputs):
            raise ProtocolError(400, f"output '{out.name}' is requested more than once")
        outputs.append(RequestedOutput(out.name, True))
    return InferRequest(
        inputs=inputs,
        outputs=outputs or None,
        id=msg.id or None,
        binary_output=True,
        parameters=parameters_of(msg.parameters),
    )


def uses_raw(msg: pb.ModelInferRequest) -> bool:
    """Whether a request sent raw contents (its answer then does too)."""
    return bool(msg.raw_input_contents)


# -- responses -----------------------------------------------------------------------------


def encode_grpc_response(
    model_name: str,
    model_version: str | None,
    outputs: Sequence[OutputTensor],
    *,
    request_id: str | None = None,
    raw: bool = True,
) -> pb.ModelInferResponse:
    """A `ModelInferResponse` of `outputs`: raw contents, or typed `contents` when `raw`
    is false (FP16 and BF16 outputs make the whole answer raw: they have no typed field)."""
    msg = pb.ModelInferResponse(model_name=model_name, model_version=model_version or "")
    if request_id:
        msg.id = request_id
    types = [out.datatype or datatype_of(out.array) for out in outputs]
    raw = raw or any(t not in CONTENTS_FIELD for t in types)
    for out, datatype in zip(outputs, types, strict=True):
        tensor = msg.outputs.add(name=out.name, datatype=datatype, shape=out.array.shape)
        if raw:
            msg.raw_output_contents.append(tensor_to_bytes(datatype, out.array))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(
                tensor_to_bytes_elements(np.asarray(out.array, dtype=object))
            )
        else:
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(
                np.ascontiguousarray(out.array).ravel().tolist()
            )
    return msg


def tensor_to_bytes_elements(array: npt.NDArray[Any]) -> list[bytes]:
    out: list[bytes] = []
    for item in array.ravel():
        out.append(item if isinstance(item, bytes) else str(item).encode())
    return out


def decode_grpc_response(msg: pb.ModelInferResponse) -> dict[str, Any]:
    """The outputs of a `ModelInferResponse` as arrays, by name."""
    raw = msg.raw_output_contents
    arrays: dict[str, Any] = {}
    for index, out in enumerate(msg.outputs):
        shape = _shape("output", out.name, out.shape)
        datatype = _datatype("output", out.name, out.datatype)
        if raw:
            arrays[out.name] = raw_tensor("output", out.name, datatype, shape, raw[index])
        else:
            arrays[out.name] = typed_tensor("output", out.name, datatype, shape, out.contents)
    return arrays


# -- REST translation ----------------------------------------------------------------------


def rest_request(msg: pb.ModelInferRequest) -> tuple[bytes, int]:
    """A REST v2 body (binary-tensor extension) asking what `msg` asks; returns (body,
    header length). Raw contents are sent on as they are; outputs come back binary."""
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise ProtocolError(
            400,
            f"the request has {len(msg.inputs)} inputs but {len(raw)} raw_input_contents",
        )
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for index, entry in enumerate(msg.inputs):
        name = entry.name
        datatype = _datatype("input", name, entry.datatype)
        if raw:
            blob = raw[index]
        else:
            shape = _shape("input", name, entry.shape)
            array = typed_tensor("input", name, datatype, shape, entry.contents)
            blob = tensor_to_bytes(datatype, array)
        entries.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(entry.shape),
                "parameters": {**parameters_of(entry.parameters), "binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    doc: dict[str, Any] = {"inputs": entries}
    if msg.id:
        doc["id"] = msg.id
    if msg.outputs:
        doc["outputs"] = [
            {"name": o.name, "parameters": {"binary_data": True}} for o in msg.outputs
        ]
    doc["parameters"] = {**parameters_of(msg.parameters), "binary_data_output": True}
    header = dumps(doc)
    return b"".join([header, *blobs]), len(header)


def grpc_response_from_rest(
    body: bytes, header_length: str | bytes | None, *, raw: bool = True
) -> pb.ModelInferResponse:
    """The `ModelInferResponse` of a REST v2 inference answer (JSON or binary tensors)."""
    decoded = decode_infer_response(body, header_length)
    outputs = [
        OutputTensor(name, array, datatype=decoded.datatypes[name])
        for name, array in decoded.outputs.items()
    ]
    return encode_grpc_response(
        decoded.model_name, decoded.model_version, outputs, request_id=decoded.id, raw=raw
    )


def metadata_response(doc: Mapping[str, Any]) -> pb.ModelMetadataResponse:
    """A `ModelMetadataResponse` from a REST v2 model metadata object."""
    msg = pb.ModelMetadataResponse(
        name=str(doc.get("name", "")),
        versions=[str(v) for v in doc.get("versions") or []],
        platform=str(doc.get("platform", "")),
    )
    for kind in ("inputs", "outputs"):
        for spec in doc.get(kind) or []:
            getattr(msg, kind).add(
                name=str(spec.get("name", "")),
                datatype=str(spec.get("datatype", "")),
                shape=[int(d) for d in spec.get("shape") or []],
            )
    return msg
