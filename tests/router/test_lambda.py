"""The Lambda entry point, driven with real event payloads against a real worker process."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from mpfn.demo import build_demo_model
from mpfn.functions.router.asgi import create_app
from mpfn.functions.router.lambda_handler import Handler, event_loop, make_handler
from mpfn.state import Documents
from mpfn.store import LocalStore
from mpfn.usage import latest_usage
from tests.router.conftest import make_pool, settings
from tests.servers.mpfn_procs import publish_demo, start_worker

X = np.arange(32, dtype=np.float32).reshape(2, 16) / 10


@pytest.fixture(scope="module")
def lambda_env(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Handler, bytes, LocalStore]]:
    root = tmp_path_factory.mktemp("lambda")
    store = LocalStore(root / "state")
    publish_demo(store, root)
    model = build_demo_model()
    worker = start_worker(store, root / "logs", "lw")
    try:
        Documents(store).upsert("pools/lw.json", make_pool("lw", worker.url))
        app = create_app(store, settings=settings(max_body_bytes=1 << 20, usage_flush_s=3600))
        yield make_handler(app), model, store
        event_loop().run_until_complete(app.runtime.stop())
    finally:
        worker.stop()


def expected(model: bytes) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["y"], {"x": X})[0])


def json_request() -> str:
    return json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 16], "datatype": "FP32", "data": X.ravel().tolist()}
            ]
        }
    )


def binary_request() -> tuple[bytes, int]:
    inp = triton.InferInput("x", [2, 16], "FP32")
    inp.set_data_from_numpy(X, binary_data=True)
    out = triton.InferRequestedOutput("y", binary_data=True)
    body, json_size = triton.InferenceServerClient.generate_request_body([inp], outputs=[out])
    return body, int(json_size or 0)


def function_url_event(
    path: str, body: str, *, b64: bool, headers: dict[str, str]
) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "host": "abc123.lambda-url.us-east-1.on.aws",
            "x-forwarded-proto": "https",
            **headers,
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "Python-urllib/3.11",
            },
            "requestId": "c0ffee",
            "routeKey": "$default",
            "stage": "$default",
            "time": "05/Mar/2024:07:09:00 +0000",
            "timeEpoch": 1709622540000,
        },
        "body": body,
        "isBase64Encoded": b64,
    }


def http_api_event(path: str, body: str, *, b64: bool, headers: dict[str, str]) -> dict[str, Any]:
    """An API Gateway HTTP API event (payload format 2.0) from a `POST /{proxy+}` route."""
    return {
        "version": "2.0",
        "routeKey": "POST /{proxy+}",
        "rawPath": path,
        "rawQueryString": "",
        "cookies": ["session=abc"],
        "headers": {
            "host": "r2d2.execute-api.us-east-1.amazonaws.com",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            **headers,
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "r2d2",
            "domainName": "r2d2.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "r2d2",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "POST /{proxy+}",
            "stage": "$default",
            "time": "05/Mar/2024:07:09:00 +0000",
            "timeEpoch": 1709622540000,
        },
        "pathParameters": {"proxy": path.lstrip("/")},
        "body": body,
        "isBase64Encoded": b64,
    }


def rest_api_event(path: str, body: str, *, b64: bool, headers: dict[str, str]) -> dict[str, Any]:
    all_headers = {"Host": "x.execute-api.us-east-1.amazonaws.com", **headers}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "POST",
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": "POST",
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "r-1",
            "identity": {"sourceIp": "203.0.113.7"},
        },
        "body": body,
        "isBase64Encoded": b64,
    }


def body_bytes(response: dict[str, Any]) -> bytes:
    body = response["body"]
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


EVENTS = [function_url_event, http_api_event, rest_api_event]


def response_headers(response: dict[str, Any]) -> dict[str, str]:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for k, values in (response.get("multiValueHeaders") or {}).items():
        headers[k.lower()] = values[-1]
    return headers


@pytest.mark.parametrize("make_event", EVENTS)
def test_json_infer(make_event: Any, lambda_env: tuple[Handler, bytes, LocalStore]) -> None:
    handler, model, _ = lambda_env
    event = make_event(
        "/v2/models/demo/infer",
        json_request(),
        b64=False,
        headers={"content-type": "application/json"},
    )
    response = handler(event, None)
    assert response["statusCode"] == 200, response
    headers = response_headers(response)
    assert headers["x-mpfn-pool"] == "lw"
    assert headers["x-mpfn-route-reason"].startswith("slo-then-cost: ")
    out = json.loads(body_bytes(response))["outputs"][0]
    y = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    np.testing.assert_allclose(y, expected(model), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make_event", EVENTS)
def test_base64_binary_infer(
    make_event: Any, lambda_env: tuple[Handler, bytes, LocalStore]
) -> None:
    handler, model, _ = lambda_env
    body, json_size = binary_request()
    event = make_event(
        "/v2/models/demo/infer",
        base64.b64encode(body).decode(),
        b64=True,
        headers={"Inference-Header-Content-Length": str(json_size)},
    )
    response = handler(event, None)
    assert response["statusCode"] == 200, response
    headers = response_headers(response)
    assert headers["x-mpfn-pool"] == "lw"
    raw = body_bytes(response)
    result = triton.InferenceServerClient.parse_response_body(
        raw, header_length=int(headers["inference-header-content-length"])
    )
    np.testing.assert_allclose(result.as_numpy("y"), expected(model), rtol=1e-6, atol=1e-6)


def test_errors_through_lambda(lambda_env: tuple[Handler, bytes, LocalStore]) -> None:
    handler, _, _ = lambda_env
    unknown = handler(
        function_url_event("/v2/models/ghost/infer", "{}", b64=False, headers={}), None
    )
    assert unknown["statusCode"] == 404 and "unknown model" in json.loads(unknown["body"])["error"]
    huge = "x" * ((1 << 20) + 1)
    too_big = handler(rest_api_event("/v2/models/demo/infer", huge, b64=False, headers={}), None)
    assert too_big["statusCode"] == 413 and "error" in json.loads(too_big["body"])
    broken = handler({"version": "2.0", "requestContext": {}}, None)
    assert broken["statusCode"] == 502 and "error" in json.loads(broken["body"])


def count_in(store: LocalStore, key: str) -> int:
    blob = store.get(key)
    assert blob is not None
    return int(json.loads(blob.body)["count"])


def test_scheduled_ping_acks_and_flushes(lambda_env: tuple[Handler, bytes, LocalStore]) -> None:
    handler, _, store = lambda_env
    ping = {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2024-03-05T07:09:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/keep-warm"],
        "detail": {},
    }
    # The ping flushes the counts of the requests served so far (6 demo inferences).
    ack = handler(ping, None)
    assert ack["ok"] is True and ack["event"] == "Scheduled Event" and ack["usage_written"] >= 1
    keys = store.list("usage/demo/")
    assert sum(count_in(store, k) for k in latest_usage(keys)) == 6
    assert store.list("usage/ghost/") == []
    assert handler({}, None)["ok"] is True
    assert handler("not even a dict", None)["ok"] is True
