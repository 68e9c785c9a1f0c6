"""`mpfn up --runtime containers`: the same stack from mpfn's images — two worker
containers and a router container — the same `router:` line, and nothing left running
after SIGTERM; with `--secure`, the worker containers serve HTTPS with the private CA's
certificate and refuse callers without the token and a client certificate."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.servers.containers import runtime
from tests.servers.mpfn_procs import start_up


def containers_of(port: str) -> list[str]:
    out = subprocess.run(
        [runtime(), "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
    ).stdout
    return [n for n in out.split() if n.startswith(f"mpfn-up-{port}-")]


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secure"])
def test_up_runs_the_stack_as_containers(
    images: dict[str, str], tmp_path: Path, secure: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"}
    state = tmp_path / "state"
    flags = ("--runtime", "containers", *(("--secure",) if secure else ()))
    proc, router, lines = start_up(tmp_path, state, env, *flags)
    port = router.rsplit(":", 1)[1]
    try:
        text = "".join(lines)
        assert images["router"] in text and images["worker"] in text  # found, not rebuilt
        assert sorted(containers_of(port)) == [
            f"mpfn-up-{port}-router",
            f"mpfn-up-{port}-worker-aws-us-east-1",
            f"mpfn-up-{port}-worker-gcp-us-central1",
        ]
        pools = json.loads((state / "up.json").read_text())["pools"]
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [1.0] * 16}]}
        answer = httpx.post(f"{router}/v2/models/demo/infer", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-mpfn-pool"] in pools
        scheme = "https" if secure else "http"
        assert all(url.startswith(f"{scheme}://") for url in pools.values())
        if secure:  # the pool itself: TLS with the private CA, a client certificate required
            worker = next(iter(pools.values()))
            ca = ssl.create_default_context(cafile=state / "tls" / "ca.pem")
            with pytest.raises(httpx.HTTPError):
                httpx.post(f"{worker}/v2/models/demo/infer", json=body, verify=ca, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0
    assert containers_of(port) == []
    assert not (state / "up.json").exists()
