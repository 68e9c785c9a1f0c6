"""Fixtures shared by every test area: the third-party servers more than one area uses,
one per session, started by their modules in `tests.servers`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import fake_gcs, moto_s3
from tests.servers import pushgateway as gateway
from tests.servers.gcp_standin import gcp_standin_server
from tests.servers.otlp import Receiver
from tests.servers.otlp import otlp_receiver as running_receiver
from tests.servers.process import Proc


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def moto_server(server_logs: Path) -> Iterator[Proc]:
    """moto on loopback: S3 and the other AWS APIs; tests use their own buckets/names."""
    with moto_s3.moto_server(server_logs) as proc:
        yield proc


@pytest.fixture(scope="session")
def fake_gcs_server(server_logs: Path) -> Iterator[Proc]:
    """fake-gcs-server on loopback; tests use their own buckets."""
    with fake_gcs.fake_gcs_server(server_logs) as proc:
        yield proc


@pytest.fixture(scope="session")
def gcp_standin(server_logs: Path) -> Iterator[Proc]:
    """The stand-in of the Cloud Run, Scheduler and IAM REST APIs (tests/servers)."""
    with gcp_standin_server(server_logs) as proc:
        yield proc


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A Prometheus Pushgateway on loopback."""
    try:
        gateway.pushgateway_binary()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    with gateway.pushgateway_server(tmp_path_factory.mktemp("pushgateway")) as proc:
        yield proc


@pytest.fixture
def otlp_receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP traces receiver on loopback, fresh for each test."""
    with running_receiver() as receiver:
        yield receiver
