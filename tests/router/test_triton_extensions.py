"""Triton's model configuration and statistics extensions and KServe v1 `:predict`,
in-process: shapes, versions, key scopes and the refusals made before any pool is asked."""

from __future__ import annotations

import httpx

from mpfn.auth import issue_key
from mpfn.demo import demo_model_version
from mpfn.documents import ModelVersion, TensorSpec
from mpfn.functions.router.asgi import create_app
from mpfn.state import Documents
from mpfn.store import LocalStore
from tests.router.backend import Backend
from tests.router.conftest import make_pool, seed, settings

TWO_INPUTS = ModelVersion(
    name="pair",
    version="3",
    inputs=[
        TensorSpec(name="a", datatype="BYTES", shape=[-1]),
        TensorSpec(name="b", datatype="INT64", shape=[-1, 2]),
    ],
    outputs=[TensorSpec(name="c", datatype="BOOL", shape=[-1])],
)


async def test_config_stats_and_predict_refusals(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    echo, _ = backends  # answers with the request's own body: not a v2 response
    seed(
        store,
        models=[demo_model_version(), demo_model_version(version="2"), TWO_INPUTS],
        pools=[make_pool("pa", echo.url)],
    )
    plaintext, doc = issue_key("demo-only", models=["demo"])
    Documents(store).upsert(doc.key, doc)
    app = create_app(store, settings=settings(auth="keys"))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://router",
            headers={"Authorization": f"Bearer {plaintext}"},
        ) as client:
            config = (await client.get("/v2/models/demo/versions/2/config")).json()
            assert config["name"] == "demo" and config["max_batch_size"] == 0
            assert (await client.get("/v2/models/pair/config")).status_code == 403

            # The key sees the statistics of the models in its scope only.
            stats = (await client.get("/v2/models/stats")).json()["model_stats"]
            assert [(s["name"], s["version"]) for s in stats] == [("demo", "1"), ("demo", "2")]
            assert all(s["inference_stats"]["success"] == {"count": 0, "ns": 0} for s in stats)
            one = (await client.get("/v2/models/demo/versions/2/stats")).json()["model_stats"]
            assert [s["version"] for s in one] == ["2"]
            assert (await client.get("/v2/models/demo/versions/7/stats")).status_code == 404

            # The echo backend's answer is no v2 response: a 502 saying so, and a failure.
            predict = await client.post("/v1/models/demo:predict", json={"instances": [[0] * 16]})
            assert predict.status_code == 502, predict.text
            assert "not a v2 inference response" in predict.json()["error"]
            assert predict.headers["x-mpfn-pool"] == "pa"
            sent = echo.seen[-1]
            assert sent["path"] == "/v2/models/demo/infer"
            assert sent["headers"]["Content-Type"] == "application/json"
            assert b'"shape":[1,16]' in sent["body"] and b'"datatype":"FP32"' in sent["body"]
            stats = (await client.get("/v2/models/demo/stats")).json()["model_stats"]
            latest = {s["version"]: s["inference_stats"] for s in stats}["2"]
            assert latest["success"]["count"] == 0 and latest["fail"]["count"] == 1

            ragged = await client.post("/v1/models/demo:predict", json={"instances": [[1], [1, 2]]})
            assert ragged.status_code == 400 and "equally long" in ragged.json()["error"]
            empty = await client.post("/v1/models/demo:predict", json={"rows": []})
            assert empty.status_code == 400 and "instances" in empty.json()["error"]
            assert len(echo.seen) == 1  # refusals never reach a pool

        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            bare = await client.post("/v1/models/demo:predict", json={"instances": [[0] * 16]})
            assert bare.status_code == 401 and isinstance(bare.json()["error"], str)
    finally:
        await app.runtime.stop()


async def test_config_of_other_types_and_predict_needs_one_input(
    store: LocalStore, backends: tuple[Backend, Backend]
) -> None:
    echo, _ = backends
    seed(
        store,
        models=[TWO_INPUTS, ModelVersion(name="llm", version="1", format="gguf")],
        pools=[make_pool("pa", echo.url)],
    )
    app = create_app(store, settings=settings())
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            config = (await client.get("/v2/models/pair/config")).json()
            assert config["platform"] == "onnxruntime_onnx" and config["backend"] == "onnxruntime"
            assert config["input"] == [
                {"name": "a", "data_type": "TYPE_STRING", "dims": [-1]},
                {"name": "b", "data_type": "TYPE_INT64", "dims": [-1, 2]},
            ]
            assert config["output"] == [{"name": "c", "data_type": "TYPE_BOOL", "dims": [-1]}]
            gguf = (await client.get("/v2/models/llm/config")).json()
            assert gguf["platform"] == "gguf" and gguf["input"] == []
            r = await client.post("/v1/models/pair:predict", json={"instances": ["x"]})
            assert r.status_code == 400 and "exactly one input" in r.json()["error"]
            assert "/v2/models/pair/infer" in r.json()["error"]
            assert not echo.seen
            stats = (await client.get("/v2/models/stats")).json()["model_stats"]
            assert [s["name"] for s in stats] == ["llm", "pair"]
    finally:
        await app.runtime.stop()
