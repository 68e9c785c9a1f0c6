"""Test servers: one module per third-party server (or stand-in) the tests run, and one for
mpfn's own processes; every test starts them through these modules only."""
