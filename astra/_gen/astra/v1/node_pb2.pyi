import datetime

from astra._gen.astra.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodePhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_PHASE_UNSPECIFIED: _ClassVar[NodePhase]
    NODE_PHASE_READY: _ClassVar[NodePhase]
    NODE_PHASE_DRAINING: _ClassVar[NodePhase]
    NODE_PHASE_DEAD: _ClassVar[NodePhase]
NODE_PHASE_UNSPECIFIED: NodePhase
NODE_PHASE_READY: NodePhase
NODE_PHASE_DRAINING: NodePhase
NODE_PHASE_DEAD: NodePhase

class Node(_message.Message):
    __slots__ = ("name", "uid", "labels", "zone", "accelerator", "capacity", "gpus", "address", "agent_version", "phase", "phase_reason", "allocated", "usage", "create_time", "update_time", "heartbeat_time", "generation", "etag")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PHASE_REASON_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: str
    labels: _containers.ScalarMap[str, str]
    zone: str
    accelerator: str
    capacity: _common_pb2.Resources
    gpus: _containers.RepeatedCompositeFieldContainer[GpuDevice]
    address: str
    agent_version: str
    phase: NodePhase
    phase_reason: str
    allocated: _common_pb2.Resources
    usage: NodeUsage
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    heartbeat_time: _timestamp_pb2.Timestamp
    generation: int
    etag: str
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., zone: _Optional[str] = ..., accelerator: _Optional[str] = ..., capacity: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., gpus: _Optional[_Iterable[_Union[GpuDevice, _Mapping]]] = ..., address: _Optional[str] = ..., agent_version: _Optional[str] = ..., phase: _Optional[_Union[NodePhase, str]] = ..., phase_reason: _Optional[str] = ..., allocated: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., usage: _Optional[_Union[NodeUsage, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., generation: _Optional[int] = ..., etag: _Optional[str] = ...) -> None: ...

class GpuDevice(_message.Message):
    __slots__ = ("model", "memory_bytes", "uuid")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    model: str
    memory_bytes: int
    uuid: str
    def __init__(self, model: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., uuid: _Optional[str] = ...) -> None: ...

class NodeUsage(_message.Message):
    __slots__ = ("cpu_utilization", "memory_used_bytes", "gpu_utilization")
    CPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    cpu_utilization: float
    memory_used_bytes: int
    gpu_utilization: float
    def __init__(self, cpu_utilization: _Optional[float] = ..., memory_used_bytes: _Optional[int] = ..., gpu_utilization: _Optional[float] = ...) -> None: ...

class PoolSummary(_message.Message):
    __slots__ = ("accelerator", "zone", "ready_nodes", "draining_nodes", "dead_nodes", "capacity", "free")
    ACCELERATOR_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    READY_NODES_FIELD_NUMBER: _ClassVar[int]
    DRAINING_NODES_FIELD_NUMBER: _ClassVar[int]
    DEAD_NODES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    accelerator: str
    zone: str
    ready_nodes: int
    draining_nodes: int
    dead_nodes: int
    capacity: _common_pb2.Resources
    free: _common_pb2.Resources
    def __init__(self, accelerator: _Optional[str] = ..., zone: _Optional[str] = ..., ready_nodes: _Optional[int] = ..., draining_nodes: _Optional[int] = ..., dead_nodes: _Optional[int] = ..., capacity: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., free: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ...) -> None: ...
