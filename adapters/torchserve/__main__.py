"""`python -m mpfn.adapters.torchserve --backend URL --port P`: the adapter server
(`mpfn.adapters.server`) with the `torchserve` adapter, so the router can forward Open Inference
Protocol v2 to a torchserve pool. Flags: `python -m mpfn.adapters.torchserve --help`."""

from __future__ import annotations

import sys

from mpfn.adapters.server.__main__ import main

if __name__ == "__main__":
    sys.exit(main(kind="torchserve"))
