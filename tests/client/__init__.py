"""Tests of mpfn.client and `mpfn invoke` against real routers on loopback."""
