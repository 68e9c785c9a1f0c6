"""`python -m tests.servers.tfserving_standin`: REST and gRPC on one event loop.

Flags follow `tensorflow_model_server` (`--port` is gRPC, `--rest_api_port` REST,
`--model_name`/`--model_base_path` serve one model at start); `--host` is the stand-in's
own (default 127.0.0.1). SIGTERM/SIGINT stop both servers.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc.aio
from aiohttp import web

from mpfn.adapters.tfserving.reload import ModelConfigSpec
from tests.servers.tfserving_standin.grpc_service import add_model_service
from tests.servers.tfserving_standin.rest import create_app
from tests.servers.tfserving_standin.servables import ServableManager, ServingError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.servers.tfserving_standin",
        description="TF Serving stand-in (REST + gRPC ModelService) serving ONNX files",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port")
    parser.add_argument("--rest_api_port", type=int, default=8501, help="REST port")
    parser.add_argument("--model_name", default="")
    parser.add_argument("--model_base_path", default="")
    parser.add_argument("--intra_op_threads", type=int, default=1)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    manager = ServableManager(args.intra_op_threads)
    if args.model_name:
        await manager.reload([ModelConfigSpec(args.model_name, args.model_base_path)])
    grpc_server = grpc.aio.server()
    add_model_service(grpc_server, manager)
    grpc_server.add_insecure_port(f"{args.host}:{args.port}")
    await grpc_server.start()
    runner = web.AppRunner(create_app(manager), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.rest_api_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await grpc_server.stop(grace=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except ServingError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
