"""The router tests' fixtures (a local store, two loopback v2 backends), for the usage
tests here."""

from tests.router.conftest import backends, store

__all__ = ["backends", "store"]
