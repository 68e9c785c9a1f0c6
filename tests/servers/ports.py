"""Loopback ports for test servers, without the bind-close-reuse race.

A server that can take a listening socket (uvicorn's `--fd`) gets one bound to port 0 here
and inherits it: the port is never free in between. A server that can only be told port
numbers is started by `start_on_free_ports`, which picks free ports and, when the server
fails because one was taken in the meantime, starts it again on other ports.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import TypeVar

from tests.servers.process import ServerExited

T = TypeVar("T")

#: What servers print when a port is taken (Go, Python, Java, C++ servers).
BIND_CONFLICT = re.compile(
    r"address already in use|EADDRINUSE|BindException|bind: |failed to bind|"
    r"couldn't bind|could not bind|Errno 98",
    re.IGNORECASE,
)
ATTEMPTS = 5


def listening_socket() -> socket.socket:
    """A TCP socket listening on 127.0.0.1 on a port the kernel picked; inheritable, to be
    handed to the server process (`pass_fds`) and closed here once the server has it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def unused_port() -> int:
    """A port nothing listens on, for addresses that must refuse connections. Never start
    a server on it: use `start_on_free_ports` or `listening_socket`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = unused_port()
        if port not in ports:
            ports.append(port)
    return ports


def start_on_free_ports(n: int, launch: Callable[[list[int]], T]) -> T:
    """`launch(ports)` with `n` distinct free ports; on a bind conflict (the server exited
    or never became ready, and its log says a port was taken) again with other ports."""
    for attempt in range(ATTEMPTS):
        try:
            return launch(_distinct_ports(n))
        except (ServerExited, TimeoutError) as error:
            if attempt == ATTEMPTS - 1 or not BIND_CONFLICT.search(str(error)):
                raise
    raise AssertionError("unreachable")
