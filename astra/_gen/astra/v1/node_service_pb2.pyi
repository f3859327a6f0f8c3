from astra._gen.astra.v1 import replica_pb2 as _replica_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchAssignmentsRequest(_message.Message):
    __slots__ = ("node", "start_revision")
    NODE_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    node: str
    start_revision: int
    def __init__(self, node: _Optional[str] = ..., start_revision: _Optional[int] = ...) -> None: ...

class WatchAssignmentsResponse(_message.Message):
    __slots__ = ("revision", "snapshot", "replicas", "removed_replicas")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    snapshot: bool
    replicas: _containers.RepeatedCompositeFieldContainer[_replica_pb2.Replica]
    removed_replicas: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revision: _Optional[int] = ..., snapshot: _Optional[bool] = ..., replicas: _Optional[_Iterable[_Union[_replica_pb2.Replica, _Mapping]]] = ..., removed_replicas: _Optional[_Iterable[str]] = ...) -> None: ...

class ReportReplicaStatusRequest(_message.Message):
    __slots__ = ("node", "reports")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    node: str
    reports: _containers.RepeatedCompositeFieldContainer[ReplicaStatusReport]
    def __init__(self, node: _Optional[str] = ..., reports: _Optional[_Iterable[_Union[ReplicaStatusReport, _Mapping]]] = ...) -> None: ...

class ReplicaStatusReport(_message.Message):
    __slots__ = ("replica", "phase", "endpoint", "message", "execution_provider", "ray_head_address")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    RAY_HEAD_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    replica: str
    phase: _replica_pb2.ReplicaPhase
    endpoint: str
    message: str
    execution_provider: str
    ray_head_address: str
    def __init__(self, replica: _Optional[str] = ..., phase: _Optional[_Union[_replica_pb2.ReplicaPhase, str]] = ..., endpoint: _Optional[str] = ..., message: _Optional[str] = ..., execution_provider: _Optional[str] = ..., ray_head_address: _Optional[str] = ...) -> None: ...

class ReportReplicaStatusResponse(_message.Message):
    __slots__ = ("removed_replicas",)
    REMOVED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    removed_replicas: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, removed_replicas: _Optional[_Iterable[str]] = ...) -> None: ...
