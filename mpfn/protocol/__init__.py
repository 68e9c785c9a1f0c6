"""Open Inference Protocol v2 (KServe v2 / Triton) codec: pure, shared by router and workers.

Parses request bodies in JSON or with the binary-tensor extension
(`Inference-Header-Content-Length`), validates them against a model's `TensorSpec`s and
encodes responses in either form. It does no I/O and knows nothing about HTTP frameworks.
"""

from mpfn.protocol.datatypes import (
    DATATYPES,
    bf16_round,
    datatype_of,
    element_size,
    numpy_dtype,
    tensor_from_bytes,
    tensor_to_bytes,
)
from mpfn.protocol.errors import ProtocolError
from mpfn.protocol.kserve_v1 import infer_to_predictions, predict_to_infer
from mpfn.protocol.request import (
    HEADER_LENGTH,
    InferInput,
    InferRequest,
    RequestedOutput,
    encode_infer_request,
    parse_infer_request,
    select_outputs,
    shape_matches,
    validate_inputs,
)
from mpfn.protocol.response import (
    InferResponse,
    OutputTensor,
    decode_infer_response,
    encode_infer_response,
)
from mpfn.protocol.tensors import dumps, format_shape, loads

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "InferInput",
    "InferRequest",
    "InferResponse",
    "OutputTensor",
    "ProtocolError",
    "RequestedOutput",
    "bf16_round",
    "datatype_of",
    "decode_infer_response",
    "dumps",
    "element_size",
    "encode_infer_request",
    "encode_infer_response",
    "format_shape",
    "infer_to_predictions",
    "loads",
    "numpy_dtype",
    "parse_infer_request",
    "predict_to_infer",
    "select_outputs",
    "shape_matches",
    "tensor_from_bytes",
    "tensor_to_bytes",
    "validate_inputs",
]
