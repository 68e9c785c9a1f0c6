"""`python -m mpfn` runs the CLI."""

from mpfn.cli.main import main

main()
