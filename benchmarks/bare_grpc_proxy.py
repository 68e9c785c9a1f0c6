"""A bare gRPC forwarding proxy for `inference.GRPCInferenceService`, the floor for any
Python gRPC hop (the gRPC analogue of `BareProxy` in router_overhead.py).

A grpc.aio server on `--port` (loopback) whose handlers take each request as the bytes
received (no protobuf decode) and send them unchanged to the same method on `--upstream`
(HOST:PORT) over one grpc.aio channel, relaying the answer's bytes; an upstream error is
relayed as its status code and details. No routing, limits, metrics, usage or metadata.
Server and channel options are the router's (functions/router/grpc_server.py), and it
runs on uvloop when installed, as the router does.

    python benchmarks/bare_grpc_proxy.py --port 9001 --upstream 127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio

from mpfn.protocol.grpc_codec import SERVICE
from mpfn.protocol.grpc_service import METHODS

#: The router's default `max_body_bytes` (its gRPC server's receive limit).
MAX_RECEIVE = 64 * 1024 * 1024

Handler = Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]


def forwarder(upstream: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]) -> Handler:
    """A handler relaying the request's bytes to `upstream` and the answer's bytes back."""

    async def forward(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            return await upstream(request)
        except grpc.aio.AioRpcError as err:
            await context.abort(err.code(), err.details() or "")
            raise  # not reached: abort raises

    return forward


async def serve(port: int, upstream: str) -> None:
    channel = grpc.aio.insecure_channel(
        upstream,
        options=[
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", -1),
        ],
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_RECEIVE),
            ("grpc.max_send_message_length", -1),
        ]
    )
    # no (de)serializers: requests and answers stay bytes on both sides
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            forwarder(channel.unary_unary(f"/{SERVICE}/{name}"))
        )
        for name in METHODS
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"could not bind 127.0.0.1:{port}")
    await server.start()
    try:
        await server.wait_for_termination()
    finally:
        await server.stop(None)
        await channel.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port to serve on (loopback)")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the worker's gRPC")
    args = parser.parse_args()
    run = asyncio.run
    if importlib.util.find_spec("uvloop"):
        import uvloop

        run = uvloop.run
    run(serve(args.port, args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
