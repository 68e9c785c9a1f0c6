"""A SeaweedFS cluster (`weed server`: master, volume, filer and an S3 gateway that checks
signatures) on loopback, with its data in a temporary directory, for the store tests."""

from __future__ import annotations

import contextlib
import json
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.servers.ports import start_on_free_ports
from tests.servers.process import Proc, start


def weed_binary() -> Path:
    path = Path(sysconfig.get_path("scripts")) / "weed"
    if not path.exists():
        path = Path(sys.executable).parent / "weed"
    return path


def _argv(root: Path, identities: Path, ports: list[int]) -> list[str]:
    m, mg, v, vg, f, fg, s, sg = ports
    return [
        str(weed_binary()), "server",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root / 'data'}",
        f"-master.port={m}", f"-master.port.grpc={mg}", "-master.telemetry=false",
        f"-volume.port={v}", f"-volume.port.grpc={vg}", "-volume.max=0",
        "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={f}", f"-filer.port.grpc={fg}",
        "-s3", f"-s3.port={s}", f"-s3.port.grpc={sg}", f"-s3.config={identities}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.autoCreateBucket=false",
    ]  # fmt: skip


@contextlib.contextmanager
def seaweedfs_server(root: Path, log_dir: Path, access_key: str, secret_key: str) -> Iterator[Proc]:
    """Yields the process; its `url` is the S3 gateway, which accepts only these keys."""
    identities = root / "s3.json"
    identity = {
        "name": "mpfn",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List"],
    }
    identities.write_text(json.dumps({"identities": [identity]}))
    (root / "data").mkdir(exist_ok=True)
    used: list[int] = []

    def launch(ports: list[int]) -> Proc:
        used.extend(ports)
        argv = _argv(root, identities, ports)
        return start(argv, port=ports[6], log_dir=log_dir, name="seaweedfs", cwd=root)

    proc = start_on_free_ports(8, launch)
    try:
        yield proc
    finally:
        proc.stop(timeout=2)  # its graceful shutdown waits on peers; the data is throwaway
        for port in used:  # unix sockets it leaves in /tmp
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
