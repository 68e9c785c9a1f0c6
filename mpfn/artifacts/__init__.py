"""mpfn package."""
