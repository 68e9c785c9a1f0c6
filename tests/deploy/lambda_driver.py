"""Runs the router's Lambda handler from an unpacked package, as the Lambda runtime would.

Usage: python -I -S lambda_driver.py PACKAGE_DIR RUNTIME_DIR < events.json

Only the standard library, PACKAGE_DIR (the unpacked zip) and RUNTIME_DIR (what the
Lambda Python runtime provides: boto3 and its dependencies) are importable. Prints one
JSON object: the handler's response to each event, and every module that was imported
from anywhere else (which must be none).
"""

from __future__ import annotations

import json
import sys
import sysconfig


def main() -> None:
    package, runtime = sys.argv[1], sys.argv[2]
    sys.path[:0] = [package, runtime]
    events = json.load(sys.stdin)
    from mpfn.functions.router.lambda_handler import handler

    responses = [handler(event, None) for event in events]
    allowed = (
        package,
        runtime,
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["platstdlib"],
    )
    foreign = sorted(
        name
        for name, module in list(sys.modules.items())
        if name not in ("__main__", "__mp_main__")
        and getattr(module, "__file__", None)
        and not str(module.__file__).startswith(allowed)
    )
    json.dump({"responses": responses, "foreign": foreign}, sys.stdout)


if __name__ == "__main__":
    main()
