from astra._gen.astra.v1 import route_pb2 as _route_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetRoutesRequest(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, models: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRoutesResponse(_message.Message):
    __slots__ = ("routes", "revision")
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    routes: _containers.RepeatedCompositeFieldContainer[_route_pb2.Route]
    revision: int
    def __init__(self, routes: _Optional[_Iterable[_Union[_route_pb2.Route, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class WatchRoutesRequest(_message.Message):
    __slots__ = ("models", "start_revision")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    start_revision: int
    def __init__(self, models: _Optional[_Iterable[str]] = ..., start_revision: _Optional[int] = ...) -> None: ...

class WatchRoutesResponse(_message.Message):
    __slots__ = ("revision", "snapshot", "routes", "removed_routes")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_ROUTES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    snapshot: bool
    routes: _containers.RepeatedCompositeFieldContainer[_route_pb2.Route]
    removed_routes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revision: _Optional[int] = ..., snapshot: _Optional[bool] = ..., routes: _Optional[_Iterable[_Union[_route_pb2.Route, _Mapping]]] = ..., removed_routes: _Optional[_Iterable[str]] = ...) -> None: ...
