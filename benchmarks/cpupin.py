"""Pin a running stack's processes to CPUs: the router (and the load generator) on one
core, the workers on the others.

On a machine that runs the load generator, the router and the workers at once, the
router waits for the scheduler whenever the workers and the client want both cores; what
a request then waits is the machine's, not the router's. Pinned, the router has a core of
its own, as it has in a deployment (a Lambda or Cloud Run instance in front of pools on
other machines), and the workers (the capacity being measured) share the rest. Linux only
(`os.sched_setaffinity`, `/proc`).
"""

from __future__ import annotations

import contextlib
import os


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus` (threads started later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
            os.sched_setaffinity(int(tid), cpus)


def pin_stack(root: int, worker_marker: bytes = b"ort_worker") -> str:
    """Pin the processes under `root`: those whose command line holds `worker_marker` on
    every CPU but the first, the others (router, supervisor) and this process on the
    first. Returns what was done, to print."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")
    front, back = {cpus[0]}, set(cpus[1:])
    workers = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                is_worker = worker_marker in f.read()
            pin(pid, back if is_worker else front)
        except FileNotFoundError:
            continue
        workers += is_worker
    pin(os.getpid(), front)
    rest = ",".join(str(c) for c in sorted(back))
    return f"router and load generator on CPU {cpus[0]}, {workers} workers on CPU {rest}"
