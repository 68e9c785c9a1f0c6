"""Scaffolds written by `mpfn init`."""
