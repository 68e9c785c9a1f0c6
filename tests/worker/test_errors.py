"""Bad input gets a 4xx with a JSON error naming the problem; overload gets 503 + Retry-After."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from mpfn.protocol import encode_infer_request
from tests.servers.process import Proc
from tests.worker.conftest import SLOW_WIDTH, StateFixture, start_worker


def infer(
    worker: Proc, content: bytes, headers: dict[str, str] | None = None, model: str = "demo"
) -> httpx.Response:
    return httpx.post(
        f"{worker.url}/v2/models/{model}/infer", content=content, headers=headers or {}
    )


def tensor(shape: list[int], datatype: str = "FP32", data: object = None) -> bytes:
    count = int(np.prod(shape))
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": shape,
                    "datatype": datatype,
                    "data": data if data is not None else [1] * count,
                }
            ]
        }
    ).encode()


def assert_error(reply: httpx.Response, status: int, message: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"error": message}
    assert "x-mpfn-inflight" in reply.headers and "x-mpfn-queued" in reply.headers


def test_unknown_model_is_404_and_not_a_metric_label(worker: Proc) -> None:
    assert_error(
        infer(worker, tensor([1, 16]), model="no-such-model"),
        404,
        "model 'no-such-model' not found",
    )
    assert_error(infer(worker, tensor([1, 16]), model="-bad"), 404, "model '-bad' not found")
    assert_error(
        httpx.get(f"{worker.url}/v2/models/no-such-model"), 404, "model 'no-such-model' not found"
    )
    assert_error(
        httpx.post(f"{worker.url}/v2/models/demo/versions/7/infer", content=tensor([1, 16])),
        404,
        "model 'demo' version '7' not found",
    )
    assert "no-such-model" not in httpx.get(f"{worker.url}/metrics").text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (tensor([2, 15]), "input 'x': shape [2,15] does not match [-1,16]"),
        (tensor([16]), "input 'x': shape [16] does not match [-1,16]"),
        (tensor([1, 16], "INT64"), "input 'x': expected datatype FP32, got INT64"),
        (tensor([1, 16], "FP99"), None),
        (tensor([2, 16], data=[1.0] * 30), "input 'x': shape holds 32 elements, data has 30"),
        (tensor([1, 16], data=["a"] * 16), "input 'x': FP32 data must be numbers"),
        (b'{"inputs": [', None),
        (b"[1, 2]", "the inference request must be a JSON object"),
        (b'{"inputs": []}', "the request must have a non-empty 'inputs' list"),
        (
            json.dumps(
                {"inputs": [{"name": "z", "shape": [1], "datatype": "FP32", "data": [1]}]}
            ).encode(),
            "unknown input 'z' (model inputs: x)",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [1] * 16}
                    ],
                    "outputs": [{"name": "nope"}],
                }
            ).encode(),
            "unknown output 'nope' (model outputs: y)",
        ),
    ],
)
def test_bad_json_requests_are_400(worker: Proc, body: bytes, message: str | None) -> None:
    reply = infer(worker, body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    if message is not None:
        assert error == message
    else:
        assert error.startswith(("invalid JSON body: ", "input 'x': unknown datatype 'FP99'"))


def test_binary_length_mismatch_is_400(worker: Proc) -> None:
    header = json.dumps(
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
    reply = infer(
        worker, header + b"\0" * 60, {"Inference-Header-Content-Length": str(len(header))}
    )
    assert_error(reply, 400, "binary data for input 'x' is 60 bytes, expected 128")


def test_binary_body_shorter_than_declared_is_400(worker: Proc) -> None:
    body, length = encode_infer_request({"x": np.ones((2, 16), np.float32)})
    assert length is not None
    reply = infer(worker, body[:-8], {"Inference-Header-Content-Length": str(length)})
    assert_error(
        reply,
        400,
        "binary data for input 'x' needs 128 bytes at offset 0, "
        "but only 120 bytes follow the inference header",
    )


@pytest.mark.parametrize("value", ["abc", "-1", "999999"])
def test_malformed_inference_header_length_is_400(worker: Proc, value: str) -> None:
    body, _ = encode_infer_request({"x": np.ones((1, 16), np.float32)})
    reply = infer(worker, body, {"Inference-Header-Content-Length": value})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("malformed inference header: ")


def test_malformed_inference_header_json_is_400(worker: Proc) -> None:
    reply = infer(worker, b"{not json" + b"\0" * 64, {"Inference-Header-Content-Length": "9"})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("malformed inference header: ")


def test_body_over_limit_is_413(worker: Proc) -> None:
    big = np.zeros((20_000, 16), np.float32)  # 1.28 MB of binary data > 1 MB limit
    body, length = encode_infer_request({"x": big})
    reply = infer(worker, body, {"Inference-Header-Content-Length": str(length)})
    assert_error(reply, 413, "request body exceeds the limit of 1048576 bytes")


def test_wrong_method_and_route(worker: Proc) -> None:
    assert_error(
        httpx.get(f"{worker.url}/v2/models/demo/infer"),
        405,
        "method GET not allowed here (use POST)",
    )
    assert_error(httpx.get(f"{worker.url}/v3/nothing"), 404, "no route for GET /v3/nothing")


def test_metrics_count_requests_by_model_and_status(worker: Proc) -> None:
    infer(worker, tensor([1, 16]))
    text = httpx.get(f"{worker.url}/metrics").text
    assert 'mpfn_worker_requests_total{model="demo",status="200"}' in text
    assert 'mpfn_worker_requests_total{model="demo",status="400"}' in text
    assert "mpfn_worker_inflight 0.0" in text and "mpfn_worker_queued 0.0" in text


@pytest.fixture(scope="module")
def busy_worker(state: StateFixture) -> Iterator[Proc]:
    yield from start_worker(
        state, "--max-concurrency", "1", "--max-queue", "0", "--preload", "slow:1"
    )


def test_queue_full_is_503_with_retry_after(busy_worker: Proc) -> None:
    slow_body, length = encode_infer_request({"x": np.ones((8192, SLOW_WIDTH), np.float32)})
    headers = {"Inference-Header-Content-Length": str(length)}
    results: list[int] = []

    def hog_the_slot() -> None:
        reply = httpx.post(
            f"{busy_worker.url}/v2/models/slow/infer",
            content=slow_body,
            headers=headers,
            timeout=120,
        )
        results.append(reply.status_code)

    for _attempt in range(3):
        results.clear()
        hog = threading.Thread(target=hog_the_slot)
        hog.start()
        try:
            # Wait (by observation, not by time) until the slow inference holds the only slot.
            while hog.is_alive():
                live = httpx.get(f"{busy_worker.url}/v2/health/live")
                if live.headers["x-mpfn-inflight"] == "1":
                    break
                time.sleep(0.005)
            reply = httpx.post(
                f"{busy_worker.url}/v2/models/slow/infer", content=tensor([1, SLOW_WIDTH])
            )
        finally:
            hog.join()
        assert results == [200]
        if reply.status_code == 503:
            assert reply.json() == {"error": "queue full"}
            assert reply.headers["retry-after"] == "1"
            assert reply.headers["x-mpfn-inflight"] == "1"
            break
        assert reply.status_code == 200  # the slow request finished first; try again
    else:
        pytest.fail("never observed a full queue")


def test_unfetchable_artifact_is_503_json(worker: Proc) -> None:
    reply = infer(worker, tensor([1, 16]), model="broken")
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"].startswith("cannot fetch artifact of models/broken/1.json: ")
    assert "retry-after" not in reply.headers  # a failure, not backpressure


def test_sigterm_lets_the_running_inference_finish(state: StateFixture) -> None:
    slow_body, length = encode_infer_request({"x": np.ones((1024, SLOW_WIDTH), np.float32)})
    for proc in start_worker(state, "--preload", "slow:1"):
        results: list[int] = []

        def slow_request(url: str = proc.url, results: list[int] = results) -> None:
            reply = httpx.post(
                f"{url}/v2/models/slow/infer",
                content=slow_body,
                headers={"Inference-Header-Content-Length": str(length)},
                timeout=120,
            )
            results.append(reply.status_code)

        request = threading.Thread(target=slow_request)
        request.start()
        while request.is_alive():
            if httpx.get(f"{proc.url}/v2/health/live").headers["x-mpfn-inflight"] == "1":
                break
            time.sleep(0.005)
        proc.popen.send_signal(signal.SIGTERM)
        request.join()
        assert proc.popen.wait(60) == 0
        assert results == [200]
