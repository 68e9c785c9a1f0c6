"""The plug-in example in docs/adapters.md is real: that exact module, loaded from the
document, satisfies the Adapter protocol and drives mpfn's ORT worker (which speaks the
same Open Inference Protocol and repository extension as MLServer)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
from pydantic import HttpUrl

from mpfn.adapters.base import Adapter, AdapterConfig
from mpfn.documents import Pool
from tests.adapters.contract import ContractCase
from tests.adapters.servers_ort import OrtServer

DOC = Path(__file__).parents[2] / "docs" / "adapters.md"


def example_module(tmp_path: Path) -> ModuleType:
    text = DOC.read_text()
    block = re.search(
        r"<!-- example:begin -->\n```python\n(.*?)```\n<!-- example:end -->", text, re.S
    )
    assert block is not None, "docs/adapters.md lost its example markers"
    path = tmp_path / "mpfn_mlserver.py"
    path.write_text(block.group(1))
    spec = importlib.util.spec_from_file_location("mpfn_mlserver", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_documented_plugin_serves_a_model(
    tmp_path: Path, ort_server: OrtServer, ort_case: ContractCase
) -> None:
    module = example_module(tmp_path)
    pool = Pool(id="ml", cloud="onprem", adapter="mlserver", endpoint=HttpUrl(ort_server.proc.url))
    async with httpx.AsyncClient(timeout=30) as client:
        adapter = module.MLServerAdapter(AdapterConfig(pool=pool), client=client)
        assert isinstance(adapter, Adapter) and adapter.kind == "mlserver"
        assert await adapter.ready()
        result = await adapter.load(ort_case.model)
        assert result.load_ms > 0 and await adapter.ready(ort_case.model)
        assert "demo:1" in await adapter.loaded()
        response = await adapter.infer(ort_case.model, ort_case.request)
        assert ort_case.reference is not None
        np.testing.assert_array_equal(
            response.outputs["y"], ort_case.reference(ort_case.request)["y"]
        )
        assert (await adapter.stats()).requests == 1
        await adapter.unload(ort_case.model)
        assert not await adapter.ready(ort_case.model)
        await adapter.aclose()
