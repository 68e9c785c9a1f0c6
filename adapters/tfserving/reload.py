"""TF Serving's model control: `ModelService.HandleReloadConfigRequest` over gRPC.

TF Serving loads and unloads models only by replacing its whole `ModelConfigList` through
the gRPC `ModelService` (REST has no model-control route). The official Python protos
(`tensorflow-serving-api`) import TensorFlow, so this module declares the few messages the
call needs — same package, names and field numbers as `model_management.proto`,
`model_server_config.proto`, `file_system_storage_path_source.proto` and `status.proto` —
in a private descriptor pool: the bytes on the wire are exactly TF Serving's.

`ReloadTransport` is the injectable seam; `GrpcReload` is the real one. Also here: TF's
error codes and their HTTP statuses (the table TF Serving's REST server uses), shared by
the adapter and the stand-in server. No TensorFlow, no global descriptor-pool changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from mpfn.adapters.base import AdapterError

SERVICE = "tensorflow.serving.ModelService"
RELOAD_METHOD = f"/{SERVICE}/HandleReloadConfigRequest"

#: tensorflow::error::Code (= gRPC status codes) by number.
CODE_NAMES: dict[int, str] = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
CODES: dict[str, int] = {name: number for number, name in CODE_NAMES.items()}

#: TF Serving's REST server maps error codes to HTTP like this (http_server.cc).
_HTTP: dict[int, int] = {
    0: 200,
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}


def http_status(code: int | str) -> int:
    """The HTTP status TF Serving answers for an error code (number or name)."""
    number = CODES.get(code, 2) if isinstance(code, str) else code
    return _HTTP.get(number, 500)


@dataclass(frozen=True, slots=True)
class ModelConfigSpec:
    """One `ModelConfig` entry: a model, its base path and which versions to serve.

    `versions` empty means TF Serving's default policy (the latest version only).
    """

    name: str
    base_path: str
    platform: str = "tensorflow"
    versions: tuple[int, ...] = ()


class ReloadTransport(Protocol):
    """Sends a complete model config list to the server; raises AdapterError on failure."""

    async def reload(self, configs: Sequence[ModelConfigSpec]) -> None: ...

    async def aclose(self) -> None: ...


# -- wire-compatible messages (protobuf is imported when they are first needed) ----------

if TYPE_CHECKING:
    from google.protobuf.descriptor_pb2 import DescriptorProto, FieldDescriptorProto


def _field(
    name: str, number: int, kind: int, type_name: str = "", repeated: bool = False
) -> FieldDescriptorProto:
    from google.protobuf.descriptor_pb2 import FieldDescriptorProto as F

    label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
    out = F(name=name, number=number, type=kind, label=label)
    if type_name:
        out.type_name = type_name
    return out


def _message(name: str, *fields: FieldDescriptorProto) -> DescriptorProto:
    from google.protobuf.descriptor_pb2 import DescriptorProto

    return DescriptorProto(name=name, field=list(fields))


@cache
def messages() -> dict[str, Any]:
    """Message classes by short name, built once in a private descriptor pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    _F = descriptor_pb2.FieldDescriptorProto
    ns = ".tensorflow.serving."
    policy_name = ns + "FileSystemStoragePathSourceConfig.ServableVersionPolicy"
    policy = _message(
        "ServableVersionPolicy",
        _field("latest", 100, _F.TYPE_MESSAGE, policy_name + ".Latest"),
        _field("all", 101, _F.TYPE_MESSAGE, policy_name + ".All"),
        _field("specific", 102, _F.TYPE_MESSAGE, policy_name + ".Specific"),
    )
    policy.nested_type.extend(
        [
            _message("Latest", _field("num_versions", 1, _F.TYPE_UINT32)),
            _message("All"),
            _message("Specific", _field("versions", 1, _F.TYPE_INT64, repeated=True)),
        ]
    )
    policy.oneof_decl.add(name="policy_choice")
    for item in policy.field:
        item.oneof_index = 0
    source = _message("FileSystemStoragePathSourceConfig")
    source.nested_type.append(policy)
    server_config = _message(
        "ModelServerConfig",
        _field("model_config_list", 1, _F.TYPE_MESSAGE, ns + "ModelConfigList"),
    )
    server_config.oneof_decl.add(name="config")
    server_config.field[0].oneof_index = 0
    proto = descriptor_pb2.FileDescriptorProto(
        name="mpfn/tfserving_model_service.proto",
        package="tensorflow.serving",
        syntax="proto3",
        message_type=[
            source,
            _message(
                "ModelConfig",
                _field("name", 1, _F.TYPE_STRING),
                _field("base_path", 2, _F.TYPE_STRING),
                _field("model_platform", 4, _F.TYPE_STRING),
                _field("model_version_policy", 7, _F.TYPE_MESSAGE, policy_name),
            ),
            _message(
                "ModelConfigList",
                _field("config", 1, _F.TYPE_MESSAGE, ns + "ModelConfig", repeated=True),
            ),
            server_config,
            # error_code is the enum tensorflow.error.Code on the wire: a varint, as int32.
            _message(
                "StatusProto",
                _field("error_code", 1, _F.TYPE_INT32),
                _field("error_message", 2, _F.TYPE_STRING),
            ),
            _message(
                "ReloadConfigRequest",
                _field("config", 1, _F.TYPE_MESSAGE, ns + "ModelServerConfig"),
            ),
            _message(
                "ReloadConfigResponse",
                _field("status", 1, _F.TYPE_MESSAGE, ns + "StatusProto"),
            ),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    names = [
        "ModelConfig",
        "ModelConfigList",
        "ModelServerConfig",
        "StatusProto",
        "ReloadConfigRequest",
        "ReloadConfigResponse",
    ]
    out = {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        )
        for name in names
    }
    return out


def reload_request(configs: Sequence[ModelConfigSpec]) -> Any:
    """The `ReloadConfigRequest` serving exactly `configs`."""
    request = messages()["ReloadConfigRequest"]()
    entries = request.config.model_config_list.config
    for spec in configs:
        entry = entries.add(name=spec.name, base_path=spec.base_path, model_platform=spec.platform)
        if spec.versions:
            entry.model_version_policy.specific.versions.extend(spec.versions)
        else:
            entry.model_version_policy.latest.num_versions = 1
    # An empty list must still select the model_config_list branch of the oneof.
    request.config.model_config_list.SetInParent()
    return request


def config_specs(request: Any) -> list[ModelConfigSpec]:
    """The model configs a `ReloadConfigRequest` asks for (the server side of the call)."""
    out: list[ModelConfigSpec] = []
    for entry in request.config.model_config_list.config:
        policy = entry.model_version_policy
        versions = tuple(policy.specific.versions) if policy.HasField("specific") else ()
        out.append(
            ModelConfigSpec(entry.name, entry.base_path, entry.model_platform or "", versions)
        )
    return out


class GrpcReload:
    """`HandleReloadConfigRequest` on a TF Serving gRPC endpoint (`host:port`).

    `secure` uses TLS with the system roots; `token` (from the pool's secrets) is sent as
    `authorization: Bearer ...` metadata for gateways that require it.
    """

    def __init__(
        self, target: str, *, timeout_s: float = 60.0, secure: bool = False, token: str = ""
    ) -> None:
        import grpc
        import grpc.aio

        self.target = target
        self.timeout_s = timeout_s
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if secure:
            self.channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
        else:
            self.channel = grpc.aio.insecure_channel(target)
        types = messages()
        self._call = self.channel.unary_unary(
            RELOAD_METHOD,
            request_serializer=types["ReloadConfigRequest"].SerializeToString,
            response_deserializer=types["ReloadConfigResponse"].FromString,
        )

    async def reload(self, configs: Sequence[ModelConfigSpec]) -> None:
        import grpc.aio

        try:
            response = await self._call(
                reload_request(configs), timeout=self.timeout_s, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code().value[0]  # UNAVAILABLE -> 503, DEADLINE_EXCEEDED -> 504
            message = f"tfserving reload failed: {CODE_NAMES.get(code, code)}: {exc.details()}"
            raise AdapterError(http_status(code), message) from None
        if response.status.error_code:
            code = response.status.error_code
            raise AdapterError(
                http_status(code),
                f"tfserving reload failed: {CODE_NAMES.get(code, code)}: "
                f"{response.status.error_message}",
            )

    async def aclose(self) -> None:
        await self.channel.close()
