"""A real mpfn stack for fault, security and schema tests: state, ORT workers, a router.

Every piece is a real process on 127.0.0.1, started by `tests.servers`: ORT workers
serving the demo model from a LocalStore, a uvicorn router reading a LocalStore or an S3
state on a moto server, and moto itself. Helpers here only seed and inspect; tests decide
what to break and what to assert.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from mpfn.documents import ModelVersion, Policy, Pool
from mpfn.state import Documents
from mpfn.store import Store
from mpfn.store.s3 import S3Store
from mpfn.usage import latest_usage
from tests.servers.moto_s3 import start_moto
from tests.servers.process import Proc

REGION = "us-east-1"
DEMO_BODY: dict[str, Any] = {
    "inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]
}
DEMO_PATH = "/v2/models/demo/infer"


def upsert(store: Store, docs: Iterable[ModelVersion | Pool | Policy]) -> None:
    documents = Documents(store)
    for doc in docs:
        documents.upsert(doc.key, doc)


def signal_proc(proc: Proc, sig: signal.Signals) -> None:
    """Send `sig` to the process group of `proc` (as a crash, a freeze or a thaw would)."""
    os.killpg(proc.popen.pid, sig)


def log_text(proc: Proc) -> str:
    """The whole log of `proc` (its stdout and stderr)."""
    return proc.log_path.read_text(errors="replace")


# -- S3 state on a moto server ---------------------------------------------------------


class MotoState:
    """A moto S3 server process and one bucket of mpfn state on it."""

    def __init__(self, log_dir: Path, access_key: str, secret_key: str) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.proc = start_moto(log_dir)
        self.bucket = "mpfn-state"
        self.prefix = "mpfn"
        try:
            self.store().client.create_bucket(Bucket=self.bucket)
        except BaseException:
            self.proc.stop()
            raise

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def options(self) -> dict[str, Any]:
        """Store options for mpfn.yaml: short timeouts so an outage is noticed quickly."""
        return {
            "endpoint_url": self.proc.url,
            "region": REGION,
            "connect_timeout": 1.0,
            "read_timeout": 1.0,
            "max_attempts": 1,
        }

    def store(self) -> S3Store:
        return S3Store(
            self.bucket,
            self.prefix,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            **self.options(),
        )

    def env(self) -> dict[str, str]:
        """What a process needs to reach the bucket (credentials come from the environment)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def project_dir(self, root: Path) -> Path:
        """A directory whose mpfn.yaml points at this state (routers start there)."""
        root.mkdir(parents=True, exist_ok=True)
        config = {"state": self.url, "s3": self.options()}
        (root / "mpfn.yaml").write_text(yaml.safe_dump(config))
        return root

    def stop(self) -> None:
        self.proc.stop()


# -- usage documents -------------------------------------------------------------------


def usage_docs(store: Store, model: str) -> dict[str, dict[str, Any]]:
    """key -> document of every usage document of `model` that counts (the latest sequence
    of each router process and minute)."""
    out: dict[str, dict[str, Any]] = {}
    for key in latest_usage(store.list(f"usage/{model}/")):
        blob = store.get(key)
        assert blob is not None
        out[key] = json.loads(blob.body)
    return out


def usage_total(store: Store, model: str) -> int:
    return sum(int(doc["count"]) for doc in usage_docs(store, model).values())


def count_lines(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text, flags=re.MULTILINE))
