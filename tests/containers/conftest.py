"""The container suite's images: built (or found) once per test run."""

from __future__ import annotations

import pytest

from tests.servers.containers import test_images


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    return test_images()
