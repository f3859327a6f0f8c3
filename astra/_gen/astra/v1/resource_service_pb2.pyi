import datetime

from astra._gen.astra.v1 import node_pb2 as _node_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HeartbeatAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEARTBEAT_ACTION_UNSPECIFIED: _ClassVar[HeartbeatAction]
    HEARTBEAT_ACTION_REREGISTER: _ClassVar[HeartbeatAction]
    HEARTBEAT_ACTION_DRAIN: _ClassVar[HeartbeatAction]
    HEARTBEAT_ACTION_REDIRECT: _ClassVar[HeartbeatAction]
HEARTBEAT_ACTION_UNSPECIFIED: HeartbeatAction
HEARTBEAT_ACTION_REREGISTER: HeartbeatAction
HEARTBEAT_ACTION_DRAIN: HeartbeatAction
HEARTBEAT_ACTION_REDIRECT: HeartbeatAction

class RegisterNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _node_pb2.Node
    def __init__(self, node: _Optional[_Union[_node_pb2.Node, _Mapping]] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("node", "heartbeat_interval", "redirect_address")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node: _node_pb2.Node
    heartbeat_interval: _duration_pb2.Duration
    redirect_address: str
    def __init__(self, node: _Optional[_Union[_node_pb2.Node, _Mapping]] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., redirect_address: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("heartbeats",)
    HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    heartbeats: _containers.RepeatedCompositeFieldContainer[NodeHeartbeat]
    def __init__(self, heartbeats: _Optional[_Iterable[_Union[NodeHeartbeat, _Mapping]]] = ...) -> None: ...

class NodeHeartbeat(_message.Message):
    __slots__ = ("node", "uid", "usage")
    NODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    node: str
    uid: str
    usage: _node_pb2.NodeUsage
    def __init__(self, node: _Optional[str] = ..., uid: _Optional[str] = ..., usage: _Optional[_Union[_node_pb2.NodeUsage, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("directives",)
    DIRECTIVES_FIELD_NUMBER: _ClassVar[int]
    directives: _containers.RepeatedCompositeFieldContainer[HeartbeatDirective]
    def __init__(self, directives: _Optional[_Iterable[_Union[HeartbeatDirective, _Mapping]]] = ...) -> None: ...

class HeartbeatDirective(_message.Message):
    __slots__ = ("node", "action", "message", "redirect_address")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node: str
    action: HeartbeatAction
    message: str
    redirect_address: str
    def __init__(self, node: _Optional[str] = ..., action: _Optional[_Union[HeartbeatAction, str]] = ..., message: _Optional[str] = ..., redirect_address: _Optional[str] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DrainNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _node_pb2.Node
    def __init__(self, node: _Optional[_Union[_node_pb2.Node, _Mapping]] = ...) -> None: ...

class DeleteNodeRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _node_pb2.Node
    def __init__(self, node: _Optional[_Union[_node_pb2.Node, _Mapping]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "phase", "label_selector")
    class LabelSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    phase: _node_pb2.NodePhase
    label_selector: _containers.ScalarMap[str, str]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., phase: _Optional[_Union[_node_pb2.NodePhase, str]] = ..., label_selector: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "next_page_token")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_node_pb2.Node]
    next_page_token: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[_node_pb2.Node, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchClusterRequest(_message.Message):
    __slots__ = ("start_revision", "omit_usage")
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    OMIT_USAGE_FIELD_NUMBER: _ClassVar[int]
    start_revision: int
    omit_usage: bool
    def __init__(self, start_revision: _Optional[int] = ..., omit_usage: _Optional[bool] = ...) -> None: ...

class WatchClusterResponse(_message.Message):
    __slots__ = ("revision", "snapshot", "nodes", "removed_nodes", "pools")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_NODES_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    snapshot: bool
    nodes: _containers.RepeatedCompositeFieldContainer[_node_pb2.Node]
    removed_nodes: _containers.RepeatedScalarFieldContainer[str]
    pools: _containers.RepeatedCompositeFieldContainer[_node_pb2.PoolSummary]
    def __init__(self, revision: _Optional[int] = ..., snapshot: _Optional[bool] = ..., nodes: _Optional[_Iterable[_Union[_node_pb2.Node, _Mapping]]] = ..., removed_nodes: _Optional[_Iterable[str]] = ..., pools: _Optional[_Iterable[_Union[_node_pb2.PoolSummary, _Mapping]]] = ...) -> None: ...
