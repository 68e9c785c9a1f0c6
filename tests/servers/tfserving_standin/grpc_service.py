"""The stand-in's gRPC `tensorflow.serving.ModelService/HandleReloadConfigRequest`.

Decodes the same wire messages TF Serving does, applies the config through the servable
manager and, like TF Serving, answers a failure with a non-OK gRPC status (same code and
message) — a client sees `AioRpcError`, never an OK call carrying an error.
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from mpfn.adapters.tfserving.reload import CODE_NAMES, SERVICE, config_specs, messages
from tests.servers.tfserving_standin.servables import ServableManager, ServingError


def add_model_service(server: grpc.aio.Server, manager: ServableManager) -> None:
    types = messages()

    async def reload(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request.config.WhichOneof("config") != "model_config_list":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported",
            )
        try:
            await manager.reload(config_specs(request))
        except ServingError as exc:
            await context.abort(grpc.StatusCode[CODE_NAMES[exc.code]], exc.message)
        return types["ReloadConfigResponse"]()

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "HandleReloadConfigRequest": grpc.unary_unary_rpc_method_handler(
                reload,
                request_deserializer=types["ReloadConfigRequest"].FromString,
                response_serializer=types["ReloadConfigResponse"].SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
