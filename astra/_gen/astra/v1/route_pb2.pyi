from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Route(_message.Message):
    __slots__ = ("model", "version", "endpoints")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    endpoints: _containers.RepeatedCompositeFieldContainer[RouteEndpoint]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., endpoints: _Optional[_Iterable[_Union[RouteEndpoint, _Mapping]]] = ...) -> None: ...

class RouteEndpoint(_message.Message):
    __slots__ = ("address", "base_weight", "replica", "node", "ray_cluster", "accelerator", "zone")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BASE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    RAY_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    address: str
    base_weight: float
    replica: str
    node: str
    ray_cluster: str
    accelerator: str
    zone: str
    def __init__(self, address: _Optional[str] = ..., base_weight: _Optional[float] = ..., replica: _Optional[str] = ..., node: _Optional[str] = ..., ray_cluster: _Optional[str] = ..., accelerator: _Optional[str] = ..., zone: _Optional[str] = ...) -> None: ...
