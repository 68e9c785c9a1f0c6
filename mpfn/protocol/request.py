"""Inference requests: parse a v2 body (JSON or binary-tensor extension), check it against
the model's tensor specs, and build one (for clients and tests).

Parsing checks the request's own consistency (datatypes, shapes vs data, binary framing);
`validate_inputs` then checks it against a model's `TensorSpec`s. Nothing here knows about
HTTP servers, models or sessions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt

from mpfn.documents import TensorSpec
from mpfn.protocol.datatypes import datatype_of
from mpfn.protocol.errors import ProtocolError
from mpfn.protocol.tensors import (
    binary_slice,
    dumps,
    element_count,
    format_shape,
    json_data,
    json_tensor,
    loads,
    parse_datatype,
    parse_shape,
    tensor_to_bytes,
)

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True, slots=True)
class InferInput:
    """One decoded input tensor; `array` already has `shape`."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the client asked for, and whether it wants it as binary data."""

    name: str
    binary: bool


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A parsed inference request. `outputs` is None when the client asked for all outputs."""

    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    binary_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def split_header_length(value: str | bytes | None, body_length: int) -> int | None:
    """Parse the Inference-Header-Content-Length header value, checking it against the body."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    try:
        length = int(text.strip())
    except ValueError:
        raise ProtocolError(
            400, f"malformed inference header: {HEADER_LENGTH} is {text!r}, not an integer"
        ) from None
    if length < 0 or length > body_length:
        raise ProtocolError(
            400,
            f"malformed inference header: {HEADER_LENGTH} is {length} "
            f"but the body has {body_length} bytes",
        )
    return length


def load_header(body: bytes, header_length: int | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON header as a dict and the binary region that follows it."""
    view = memoryview(body)
    head = view if header_length is None else view[:header_length]
    try:
        doc = loads(head)
    except ValueError as exc:
        what = "invalid JSON body" if header_length is None else "malformed inference header"
        raise ProtocolError(400, f"{what}: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError(400, "the inference request must be a JSON object")
    return doc, view[len(head) :]


def parse_infer_request(body: bytes, header_length: str | bytes | None = None) -> InferRequest:
    """Decode a v2 inference request body; `header_length` is the raw header value, if any."""
    length = split_header_length(header_length, len(body))
    doc, region = load_header(body, length)
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError(400, "the request must have a non-empty 'inputs' list")
    inputs: list[InferInput] = []
    seen: set[str] = set()
    offset = 0
    for entry in raw_inputs:
        name = _entry_name("input", entry)
        if name in seen:
            raise ProtocolError(400, f"input '{name}' appears more than once")
        seen.add(name)
        datatype = parse_datatype("input", name, entry.get("datatype"))
        shape = parse_shape("input", name, entry.get("shape"))
        count = element_count(shape)
        params = _parameters(f"input '{name}'", entry.get("parameters"))
        if "binary_data_size" in params:
            if "data" in entry:
                raise ProtocolError(
                    400, f"input '{name}' has both 'data' and parameters.binary_data_size"
                )
            flat, offset = binary_slice(
                "input",
                name,
                datatype,
                count,
                params["binary_data_size"],
                region,
                offset,
                length is not None,
            )
        elif "data" in entry:
            flat = json_tensor("input", name, datatype, count, entry["data"])
        else:
            raise ProtocolError(400, f"input '{name}' has neither 'data' nor binary_data_size")
        inputs.append(InferInput(name, datatype, shape, flat.reshape(shape)))
    if offset != len(region):
        raise ProtocolError(
            400,
            f"the request has {len(region)} bytes of binary data after the inference header "
            f"but its inputs declare {offset}",
        )
    params = _parameters("request", doc.get("parameters"))
    binary_output = params.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise ProtocolError(400, "parameters.binary_data_output must be true or false")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(400, "'id' must be a string")
    return InferRequest(
        inputs=inputs,
        outputs=_requested_outputs(doc.get("outputs"), binary_output),
        id=request_id,
        binary_output=binary_output,
        parameters=params,
    )


def _entry_name(kind: str, entry: Any) -> str:
    if not isinstance(entry, dict):
        raise ProtocolError(400, f"each {kind} must be a JSON object")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(400, f"each {kind} needs a non-empty string 'name'")
    return name


def _parameters(where: str, params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(400, f"{where}: 'parameters' must be a JSON object")
    return params


def _requested_outputs(raw: Any, default_binary: bool) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ProtocolError(400, "'outputs' must be a list")
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for entry in raw:
        name = _entry_name("output", entry)
        if name in seen:
            raise ProtocolError(400, f"output '{name}' is requested more than once")
        seen.add(name)
        params = _parameters(f"output '{name}'", entry.get("parameters"))
        binary = params.get("binary_data", default_binary)
        if not isinstance(binary, bool):
            raise ProtocolError(400, f"output '{name}': parameters.binary_data must be a boolean")
        outputs.append(RequestedOutput(name, binary))
    return outputs or None


def validate_inputs(
    request: InferRequest, specs: Sequence[TensorSpec]
) -> dict[str, npt.NDArray[Any]]:
    """Check inputs against the model's specs; returns the feed (name -> array)."""
    by_name = {spec.name: spec for spec in specs}
    feed: dict[str, npt.NDArray[Any]] = {}
    for tensor in request.inputs:
        spec = by_name.get(tensor.name)
        if spec is None:
            expected = ", ".join(by_name) or "none"
            raise ProtocolError(400, f"unknown input '{tensor.name}' (model inputs: {expected})")
        if tensor.datatype != spec.datatype:
            raise ProtocolError(
                400,
                f"input '{tensor.name}': expected datatype {spec.datatype}, got {tensor.datatype}",
            )
        if not shape_matches(tensor.shape, spec.shape):
            raise ProtocolError(
                400,
                f"input '{tensor.name}': shape {format_shape(tensor.shape)} does not match "
                f"{format_shape(spec.shape)}",
            )
        feed[tensor.name] = tensor.array
    missing = [name for name in by_name if name not in feed]
    if missing:
        raise ProtocolError(400, "missing input " + ", ".join(f"'{m}'" for m in missing))
    return feed


def shape_matches(shape: Sequence[int], spec: Sequence[int]) -> bool:
    """Same rank and every dimension equal, where -1 in `spec` matches any size."""
    return len(shape) == len(spec) and all(
        s == -1 or s == d for d, s in zip(shape, spec, strict=True)
    )


def select_outputs(request: InferRequest, output_names: Sequence[str]) -> list[RequestedOutput]:
    """The outputs to return: those requested (checked to exist), else all of the model's."""
    if request.outputs is None:
        return [RequestedOutput(name, request.binary_output) for name in output_names]
    known = set(output_names)
    for out in request.outputs:
        if out.name not in known:
            raise ProtocolError(
                400, f"unknown output '{out.name}' (model outputs: {', '.join(output_names)})"
            )
    return request.outputs


def encode_infer_request(
    inputs: Mapping[str, npt.NDArray[Any]],
    *,
    binary: bool = True,
    outputs: Mapping[str, bool] | None = None,
    binary_output: bool = False,
    request_id: str | None = None,
    datatypes: Mapping[str, str] | None = None,
) -> tuple[bytes, int | None]:
    """Build a request body; returns (body, header length or None for plain JSON).

    `outputs` maps requested output names to whether each should come back binary;
    `datatypes` overrides the datatype inferred from an array (e.g. BF16 for float32).
    """
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in inputs.items():
        datatype = (datatypes or {}).get(name) or datatype_of(array)
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary:
            blob = tensor_to_bytes(datatype, array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = json_data("input", name, datatype, array)
        entries.append(entry)
    doc: dict[str, Any] = {"inputs": entries}
    if request_id is not None:
        doc["id"] = request_id
    if outputs is not None:
        doc["outputs"] = [
            {"name": name, "parameters": {"binary_data": wants}} for name, wants in outputs.items()
        ]
    if binary_output:
        doc["parameters"] = {"binary_data_output": True}
    header = dumps(doc)
    if not binary:
        return header, None
    return b"".join([header, *blobs]), len(header)
