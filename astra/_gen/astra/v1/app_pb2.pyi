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

class ModelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_FORMAT_UNSPECIFIED: _ClassVar[ModelFormat]
    MODEL_FORMAT_ONNX: _ClassVar[ModelFormat]

class PlacementStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLACEMENT_STRATEGY_UNSPECIFIED: _ClassVar[PlacementStrategy]
    PLACEMENT_STRATEGY_SPREAD: _ClassVar[PlacementStrategy]
    PLACEMENT_STRATEGY_PACK: _ClassVar[PlacementStrategy]
    PLACEMENT_STRATEGY_WATERMARK: _ClassVar[PlacementStrategy]
MODEL_FORMAT_UNSPECIFIED: ModelFormat
MODEL_FORMAT_ONNX: ModelFormat
PLACEMENT_STRATEGY_UNSPECIFIED: PlacementStrategy
PLACEMENT_STRATEGY_SPREAD: PlacementStrategy
PLACEMENT_STRATEGY_PACK: PlacementStrategy
PLACEMENT_STRATEGY_WATERMARK: PlacementStrategy

class App(_message.Message):
    __slots__ = ("name", "uid", "models", "replicas", "resources", "placement", "ray", "priority", "labels", "generation", "observed_generation", "reconciling", "conditions", "replica_counts", "create_time", "update_time", "etag", "rollout", "rollout_status")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    RAY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    RECONCILING_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_COUNTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_STATUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: str
    models: _containers.RepeatedCompositeFieldContainer[Model]
    replicas: int
    resources: ReplicaResources
    placement: Placement
    ray: RayClusterSpec
    priority: int
    labels: _containers.ScalarMap[str, str]
    generation: int
    observed_generation: int
    reconciling: bool
    conditions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Condition]
    replica_counts: ReplicaCounts
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    rollout: RolloutPolicy
    rollout_status: RolloutStatus
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[str] = ..., models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., replicas: _Optional[int] = ..., resources: _Optional[_Union[ReplicaResources, _Mapping]] = ..., placement: _Optional[_Union[Placement, _Mapping]] = ..., ray: _Optional[_Union[RayClusterSpec, _Mapping]] = ..., priority: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., generation: _Optional[int] = ..., observed_generation: _Optional[int] = ..., reconciling: _Optional[bool] = ..., conditions: _Optional[_Iterable[_Union[_common_pb2.Condition, _Mapping]]] = ..., replica_counts: _Optional[_Union[ReplicaCounts, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., rollout: _Optional[_Union[RolloutPolicy, _Mapping]] = ..., rollout_status: _Optional[_Union[RolloutStatus, _Mapping]] = ...) -> None: ...

class RolloutPolicy(_message.Message):
    __slots__ = ("max_surge", "max_unavailable")
    MAX_SURGE_FIELD_NUMBER: _ClassVar[int]
    MAX_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    max_surge: int
    max_unavailable: int
    def __init__(self, max_surge: _Optional[int] = ..., max_unavailable: _Optional[int] = ...) -> None: ...

class RolloutStatus(_message.Message):
    __slots__ = ("updated", "updated_ready", "old", "retiring", "failed")
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_READY_FIELD_NUMBER: _ClassVar[int]
    OLD_FIELD_NUMBER: _ClassVar[int]
    RETIRING_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    updated_ready: int
    old: int
    retiring: int
    failed: int
    def __init__(self, updated: _Optional[int] = ..., updated_ready: _Optional[int] = ..., old: _Optional[int] = ..., retiring: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "version", "uri", "sha256", "format")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    uri: str
    sha256: str
    format: ModelFormat
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., uri: _Optional[str] = ..., sha256: _Optional[str] = ..., format: _Optional[_Union[ModelFormat, str]] = ...) -> None: ...

class ReplicaResources(_message.Message):
    __slots__ = ("cpu_millis", "memory_bytes", "gpus", "accelerators")
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    cpu_millis: int
    memory_bytes: int
    gpus: int
    accelerators: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cpu_millis: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., gpus: _Optional[int] = ..., accelerators: _Optional[_Iterable[str]] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("node_selector", "affinity", "anti_affinity", "strategy", "watermark", "max_per_node", "spread_zones")
    class NodeSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    ANTI_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    SPREAD_ZONES_FIELD_NUMBER: _ClassVar[int]
    node_selector: _containers.ScalarMap[str, str]
    affinity: _containers.RepeatedScalarFieldContainer[str]
    anti_affinity: _containers.RepeatedScalarFieldContainer[str]
    strategy: PlacementStrategy
    watermark: float
    max_per_node: int
    spread_zones: bool
    def __init__(self, node_selector: _Optional[_Mapping[str, str]] = ..., affinity: _Optional[_Iterable[str]] = ..., anti_affinity: _Optional[_Iterable[str]] = ..., strategy: _Optional[_Union[PlacementStrategy, str]] = ..., watermark: _Optional[float] = ..., max_per_node: _Optional[int] = ..., spread_zones: _Optional[bool] = ...) -> None: ...

class RayClusterSpec(_message.Message):
    __slots__ = ("clusters", "workers_per_cluster")
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_PER_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    clusters: int
    workers_per_cluster: int
    def __init__(self, clusters: _Optional[int] = ..., workers_per_cluster: _Optional[int] = ...) -> None: ...

class ReplicaCounts(_message.Message):
    __slots__ = ("desired", "placed", "ready", "unplaceable")
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    PLACED_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    UNPLACEABLE_FIELD_NUMBER: _ClassVar[int]
    desired: int
    placed: int
    ready: int
    unplaceable: int
    def __init__(self, desired: _Optional[int] = ..., placed: _Optional[int] = ..., ready: _Optional[int] = ..., unplaceable: _Optional[int] = ...) -> None: ...
