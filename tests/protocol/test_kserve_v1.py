"""KServe v1 `instances`/`predictions` to and from the v2 codec."""

from __future__ import annotations

import numpy as np
import pytest

from mpfn.documents import TensorSpec
from mpfn.protocol import (
    OutputTensor,
    ProtocolError,
    encode_infer_response,
    infer_to_predictions,
    loads,
    parse_infer_request,
    predict_to_infer,
)

X = TensorSpec(name="x", datatype="FP32", shape=[-1, 3])


def test_instances_become_the_rows_of_the_single_input() -> None:
    body = predict_to_infer(b'{"instances": [[1, 2, 3], [4, 5, 6.5]]}', X)
    request = parse_infer_request(body)
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", "FP32", (2, 3))
    np.testing.assert_array_equal(tensor.array, [[1, 2, 3], [4, 5, 6.5]])
    ints = parse_infer_request(
        predict_to_infer(
            b'{"inputs": [[1, 2]]}', TensorSpec(name="i", datatype="INT64", shape=[-1, 2])
        )
    ).inputs[0]
    assert ints.array.dtype == np.int64 and ints.shape == (1, 2)
    text = loads(
        predict_to_infer(
            b'{"instances": ["a", "b"]}', TensorSpec(name="s", datatype="BYTES", shape=[-1])
        )
    )
    assert text["inputs"][0] == {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}


@pytest.mark.parametrize(
    ("body", "spec", "message"),
    [
        (b"nope", X, "not valid JSON"),
        (b"[1]", X, "JSON object"),
        (b'{"instances": []}', X, "non-empty"),
        (b'{"instances": [[1, 2, 3], [1]]}', X, "equally long"),
        (b'{"instances": [["a", "b", "c"]]}', X, "numbers (FP32)"),
        (
            b'{"instances": [["a"], "b"]}',
            TensorSpec(name="s", datatype="BYTES", shape=[-1]),
            "strings",
        ),
    ],
)
def test_bad_instances_are_400(body: bytes, spec: TensorSpec, message: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        predict_to_infer(body, spec)
    assert refused.value.status == 400 and message in refused.value.message


@pytest.mark.parametrize("binary", [False, True])
def test_predictions_from_json_and_binary_answers(binary: bool) -> None:
    y = np.arange(6, dtype=np.float32).reshape(3, 2)
    body, length = encode_infer_response("m", "1", [OutputTensor("y", y, binary=binary)])
    assert loads(infer_to_predictions(body, None if length is None else str(length))) == {
        "predictions": y.tolist()
    }


def test_several_outputs_give_one_object_per_row() -> None:
    outputs = [
        OutputTensor("y", np.array([[1.5], [2.5]], dtype=np.float32)),
        OutputTensor("label", np.array([b"cat", b"dog"], dtype=object)),
    ]
    body, _ = encode_infer_response("m", None, outputs)
    assert loads(infer_to_predictions(body)) == {
        "predictions": [{"y": [1.5], "label": "cat"}, {"y": [2.5], "label": "dog"}]
    }


def test_an_answer_without_outputs_is_502() -> None:
    with pytest.raises(ProtocolError) as broken:
        infer_to_predictions(b'{"inputs": []}')
    assert broken.value.status == 502
