"""`python -m mpfn.functions.warmer`: one warmer run (Cloud Run job, CronJob, cron).

Prints the run's summary as one JSON line; exits 1 when the run failed (store unreachable,
invalid settings), 0 otherwise, also when some pools or actions failed (they are in the
summary and the plan). `--dry-run` computes the plan without applying or writing it;
`--state URL` overrides `MPFN_STATE`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from mpfn.functions.warmer.entry import run_from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpfn.functions.warmer")
    parser.add_argument("--state", help="State URL (default: $MPFN_STATE)")
    parser.add_argument("--dry-run", action="store_true", help="Plan only; change nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = run_from_env(state=args.state, apply=not args.dry_run)
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
