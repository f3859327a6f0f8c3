import datetime

from astra._gen.astra.v1 import app_pb2 as _app_pb2
from astra._gen.astra.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReplicaRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLICA_ROLE_UNSPECIFIED: _ClassVar[ReplicaRole]
    REPLICA_ROLE_HEAD: _ClassVar[ReplicaRole]
    REPLICA_ROLE_WORKER: _ClassVar[ReplicaRole]

class ReplicaPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLICA_PHASE_UNSPECIFIED: _ClassVar[ReplicaPhase]
    REPLICA_PHASE_PENDING: _ClassVar[ReplicaPhase]
    REPLICA_PHASE_STARTING: _ClassVar[ReplicaPhase]
    REPLICA_PHASE_READY: _ClassVar[ReplicaPhase]
    REPLICA_PHASE_DRAINING: _ClassVar[ReplicaPhase]
    REPLICA_PHASE_DRAINED: _ClassVar[ReplicaPhase]
    REPLICA_PHASE_FAILED: _ClassVar[ReplicaPhase]
REPLICA_ROLE_UNSPECIFIED: ReplicaRole
REPLICA_ROLE_HEAD: ReplicaRole
REPLICA_ROLE_WORKER: ReplicaRole
REPLICA_PHASE_UNSPECIFIED: ReplicaPhase
REPLICA_PHASE_PENDING: ReplicaPhase
REPLICA_PHASE_STARTING: ReplicaPhase
REPLICA_PHASE_READY: ReplicaPhase
REPLICA_PHASE_DRAINING: ReplicaPhase
REPLICA_PHASE_DRAINED: ReplicaPhase
REPLICA_PHASE_FAILED: ReplicaPhase

class Replica(_message.Message):
    __slots__ = ("name", "node", "ray_cluster", "role", "resources", "models", "app_generation", "ray_head_address", "phase", "endpoint", "execution_provider", "message", "conditions", "create_time", "update_time", "retire_time", "template")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    RAY_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    APP_GENERATION_FIELD_NUMBER: _ClassVar[int]
    RAY_HEAD_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    RETIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    node: str
    ray_cluster: str
    role: ReplicaRole
    resources: _app_pb2.ReplicaResources
    models: _containers.RepeatedCompositeFieldContainer[_app_pb2.Model]
    app_generation: int
    ray_head_address: str
    phase: ReplicaPhase
    endpoint: str
    execution_provider: str
    message: str
    conditions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Condition]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    retire_time: _timestamp_pb2.Timestamp
    template: str
    def __init__(self, name: _Optional[str] = ..., node: _Optional[str] = ..., ray_cluster: _Optional[str] = ..., role: _Optional[_Union[ReplicaRole, str]] = ..., resources: _Optional[_Union[_app_pb2.ReplicaResources, _Mapping]] = ..., models: _Optional[_Iterable[_Union[_app_pb2.Model, _Mapping]]] = ..., app_generation: _Optional[int] = ..., ray_head_address: _Optional[str] = ..., phase: _Optional[_Union[ReplicaPhase, str]] = ..., endpoint: _Optional[str] = ..., execution_provider: _Optional[str] = ..., message: _Optional[str] = ..., conditions: _Optional[_Iterable[_Union[_common_pb2.Condition, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., template: _Optional[str] = ...) -> None: ...
