"""A network link between sites with a one-way delay: a TCP forwarder, for kernels without netem.

Listens on `--listen HOST:PORT` and forwards every connection to `--target HOST:PORT`.
Each chunk read in either direction is delivered `--delay-ms` after it arrived, in order,
without waiting for the previous chunk's delay to pass (a propagation delay, not a
bandwidth limit). A new connection's first bytes also wait one extra round trip, as data
does behind a real TCP handshake across the link. `--delay-ms 0` forwards at once.

    python benchmarks/delaylink.py --listen 10.0.0.2:9001 --target 127.0.0.1:8001 --delay-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

Chunk = tuple[float, bytes]  # (when to deliver, data); b"" means end of stream


async def _read(source: asyncio.StreamReader, queue: asyncio.Queue[Chunk], delay: float,
                not_before: float) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        while data := await source.read(65536):
            queue.put_nowait((max(loop.time(), not_before) + delay, data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((max(loop.time(), not_before) + delay, b""))


async def _write(sink: asyncio.StreamWriter, queue: asyncio.Queue[Chunk]) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            at, data = await queue.get()
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if sink.can_write_eof():
                    sink.write_eof()
                return
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError):
        pass


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float,
                not_before: float) -> None:  # fmt: skip
    queue: asyncio.Queue[Chunk] = asyncio.Queue()
    reader = asyncio.create_task(_read(source, queue, delay, not_before))
    try:
        await _write(sink, queue)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def serve(listen: tuple[str, int], target: tuple[str, int], delay_ms: float) -> None:
    delay = delay_ms / 1000.0

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        handshake_done = asyncio.get_running_loop().time() + 2 * delay
        try:
            server_r, server_w = await asyncio.open_connection(*target)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(
                _pump(client_r, server_w, delay, handshake_done),
                _pump(server_r, client_w, delay, 0.0),
            )
        finally:
            for writer in (client_w, server_w):
                writer.close()

    server = await asyncio.start_server(handle, *listen, backlog=256)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def _address(raw: str) -> tuple[str, int]:
    host, _, port = raw.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT")
    parser.add_argument("--target", type=_address, required=True, help="HOST:PORT")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one way")
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.target, args.delay_ms))


if __name__ == "__main__":
    main()
