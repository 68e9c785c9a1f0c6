"""Start a real router process (uvicorn) and ORT worker processes for end-to-end tests."""

from __future__ import annotations

from pathlib import Path

from procs import PYTHON, Proc, free_port, start

from mpfn.artifacts.models import push_model
from mpfn.demo import build_demo_model, demo_model_version
from mpfn.state import Documents
from mpfn.store import LocalStore


def publish_demo(store: LocalStore, workdir: Path) -> bytes:
    """Push the demo model's artifact and register its ModelVersion; returns the ONNX bytes."""
    model = build_demo_model()
    path = workdir / "demo.onnx"
    path.write_bytes(model)
    ref = push_model(store, path, name="demo", version="1")
    doc = demo_model_version(ref)
    Documents(store).upsert(doc.key, doc)
    return model


def start_worker(
    store: LocalStore,
    log_dir: Path,
    name: str,
    *extra: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Proc:
    """An ORT worker with the demo model preloaded; `extra` flags such as
    `--inject-delay-ms 30`; `port` to restart one where it was; `env` more variables."""
    port = port or free_port()
    argv = [
        PYTHON, "-m", "mpfn.adapters.ort_worker",
        "--host", "127.0.0.1", "--port", str(port),
        "--state", store.url,
        "--cache-dir", str(log_dir / f"cache-{name}"),
        "--preload", "demo",
        "--intra-op-threads", "1",
        *extra,
    ]  # fmt: skip
    return start(
        argv,
        port=port,
        log_dir=log_dir,
        name=name,
        env=env,
        ready_url=f"http://127.0.0.1:{port}/v2/models/demo/ready",
    )


def start_router(store: LocalStore, log_dir: Path, name: str = "router", **env: str) -> Proc:
    port = free_port()
    argv = [
        PYTHON, "-m", "uvicorn", "mpfn.functions.router.app:app",
        "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    settings = {
        "MPFN_STATE": store.url,
        "MPFN_ROUTER_REFRESH_TTL_S": "0.2",
        "MPFN_ROUTER_USAGE_FLUSH_S": "0.2",
        **env,
    }
    return start(
        argv,
        port=port,
        log_dir=log_dir,
        name=name,
        env=settings,
        ready_url=f"http://127.0.0.1:{port}/v2/health/ready",
    )
