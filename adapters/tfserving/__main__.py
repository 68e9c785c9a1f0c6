"""`python -m mpfn.adapters.tfserving --backend URL --port P`: the adapter server
(`mpfn.adapters.server`) with the `tfserving` adapter, so the router can forward Open Inference
Protocol v2 to a tfserving pool. Flags: `python -m mpfn.adapters.tfserving --help`."""

from __future__ import annotations

import sys

from mpfn.adapters.server.__main__ import main

if __name__ == "__main__":
    sys.exit(main(kind="tfserving"))
