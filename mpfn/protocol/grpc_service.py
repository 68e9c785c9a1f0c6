"""`inference.GRPCInferenceService` wiring for grpc.aio servers and clients.

The messages come from the committed `grpc_predict_v2_pb2` (see
`scripts/gen_grpc_stubs`); the service's method handlers and client stubs are built here
from the method table, so no generated gRPC module (and its grpcio version check) is
needed. `add_service` registers an implementation's coroutines on a server; `Stub` calls
a server's methods on a channel.
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from mpfn.protocol import grpc_predict_v2_pb2 as pb
from mpfn.protocol.grpc_codec import SERVICE

#: Method name -> (request message, response message).
METHODS: dict[str, tuple[Any, Any]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}


def _serialize(message: Any) -> bytes:
    """A message, or bytes already serialized (a router relaying a pool's answer)."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_service(
    server: grpc.aio.Server, impl: object, *, raw_requests: tuple[str, ...] = ()
) -> None:
    """Register `impl`'s methods on `server`; the methods named in `raw_requests` get
    their request as the bytes received (to relay them unchanged). Any method may return
    serialized bytes instead of a message."""
    handlers = {}
    for name, (request, _response) in METHODS.items():
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            getattr(impl, name),
            request_deserializer=None if name in raw_requests else request.FromString,
            response_serializer=_serialize,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


class Stub:
    """Client calls of the service on one channel; `ModelInferRaw` sends bytes already
    serialized and returns the answer's bytes (for relaying)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        for name, (request, response) in METHODS.items():
            setattr(
                self,
                name,
                channel.unary_unary(
                    f"/{SERVICE}/{name}",
                    request_serializer=request.SerializeToString,
                    response_deserializer=response.FromString,
                ),
            )
        self.ModelInferRaw = channel.unary_unary(f"/{SERVICE}/ModelInfer")

    def __getattr__(self, name: str) -> Any:  # the methods set in __init__, for mypy
        raise AttributeError(name)
