"""TF Serving's REST tensor JSON and the reload call's wire bytes: pure functions, no server.

The expected reload bytes were produced by protoc-generated classes of TF Serving's own
`.proto` files for the same config, so the hand-declared messages stay wire-identical.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpfn.adapters.tfserving.codec import (
    TensorJSONError,
    loads,
    predict_body,
    predict_outputs,
    tensor_array,
    tensor_value,
)
from mpfn.adapters.tfserving.reload import (
    ModelConfigSpec,
    config_specs,
    http_status,
    messages,
    reload_request,
)

RELOAD_HEX = (
    "0a4f0a4d0a290a0464656d6f120c2f6d6f64656c732f64656d6f220a74656e736f72666c6f773a07b20604"
    "0a0201030a200a056f7468657212042f6d2f6f220a74656e736f72666c6f773a05a206020801"
)
RESPONSE_HEX = "0a1c08051218436f756c64206e6f742066696e6420626173652070617468"
SPECS = [
    ModelConfigSpec("demo", "/models/demo", "tensorflow", (1, 3)),
    ModelConfigSpec("other", "/m/o", "tensorflow", ()),
]


def test_reload_request_bytes_are_tf_servings() -> None:
    request = reload_request(SPECS)
    assert request.SerializeToString().hex() == RELOAD_HEX
    parsed = messages()["ReloadConfigRequest"].FromString(bytes.fromhex(RELOAD_HEX))
    assert config_specs(parsed) == SPECS


def test_reload_response_status_is_read_and_an_empty_list_is_still_a_list() -> None:
    response = messages()["ReloadConfigResponse"].FromString(bytes.fromhex(RESPONSE_HEX))
    assert (response.status.error_code, response.status.error_message) == (
        5,
        "Could not find base path",
    )
    empty = reload_request([])
    assert empty.config.WhichOneof("config") == "model_config_list"
    assert http_status(5) == http_status("NOT_FOUND") == 404 and http_status(14) == 503


@pytest.mark.parametrize(
    "datatype, array",
    [
        ("FP32", np.array([[0.1, 1 / 3], [1e-8, -2.5]], dtype=np.float32)),
        ("INT64", np.array([[1, -2, 3]], dtype=np.int64)),
        ("BOOL", np.array([True, False])),
        ("FP32", np.array(1.5, dtype=np.float32)),
        ("BYTES", np.array([[b"caf\xc3\xa9", b"\xff\x00"]], dtype=object)),
    ],
)
def test_tensors_round_trip_through_json(datatype: str, array: np.ndarray) -> None:
    body = predict_body({"t": (datatype, array)}, row=False, signature=None)
    decoded = tensor_array(loads(body)["inputs"], datatype, "t")
    assert decoded.shape == array.shape and decoded.dtype == array.dtype
    assert decoded.tolist() == array.tolist()


def test_binary_strings_are_b64_objects_and_names_ending_in_bytes_always_are() -> None:
    strings = np.array([b"text", b"\xff"], dtype=object)
    assert tensor_value(strings, "BYTES") == ["text", {"b64": "/w=="}]
    assert tensor_value(strings, "BYTES", b64=True) == [{"b64": "dGV4dA=="}, {"b64": "/w=="}]


def test_non_finite_floats_are_written_as_tokens_and_read_back() -> None:
    array = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=np.float32)
    body = predict_body({"x": ("FP32", array)}, row=True, signature="serving_default")
    assert body == (
        b'{"signature_name": "serving_default", "instances": [NaN, Infinity, -Infinity, 1.0]}'
    )
    np.testing.assert_array_equal(tensor_array(loads(body)["instances"], "FP32"), array)


def test_row_format_with_several_inputs_is_a_list_of_objects() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    b = np.array([7, 8], dtype=np.int32)
    doc = loads(predict_body({"a": ("FP32", a), "b": ("INT32", b)}, row=True, signature=None))
    assert doc == {"instances": [{"a": [1.0, 2.0], "b": 7}, {"a": [3.0, 4.0], "b": 8}]}
    with pytest.raises(TensorJSONError, match="first dimension"):
        predict_body({"a": ("FP32", a), "b": ("INT32", b[:1])}, row=True, signature=None)


def test_predict_outputs_in_both_formats() -> None:
    types = {"y": "FP32", "z": "INT64"}
    row = {"predictions": [{"y": [1.0, 2.0], "z": 3}, {"y": [4.0, 5.0], "z": 6}]}
    out = predict_outputs(row, row=True, names=["y", "z"], datatypes=types)
    assert out["y"].tolist() == [[1.0, 2.0], [4.0, 5.0]] and out["z"].tolist() == [3, 6]
    assert out["y"].dtype == np.float32 and out["z"].dtype == np.int64
    single = predict_outputs({"outputs": [[1.5]]}, row=False, names=["y"], datatypes=types)
    assert single["y"].tolist() == [[1.5]] and single["y"].dtype == np.float32
    with pytest.raises(TensorJSONError, match="one unnamed tensor"):
        predict_outputs({"outputs": [[1.5]]}, row=False, names=["y", "z"], datatypes=types)


def test_ragged_and_mistyped_values_are_refused() -> None:
    with pytest.raises(TensorJSONError, match="unexpected size"):
        tensor_array([[1.0, 2.0], [3.0]], "FP32", "x")
    with pytest.raises(TensorJSONError, match="expected numbers"):
        tensor_array([1.0, "two"], "FP32", "x")
    with pytest.raises(TensorJSONError, match="base64"):
        tensor_array([{"b64": "***"}], "BYTES", "x")
