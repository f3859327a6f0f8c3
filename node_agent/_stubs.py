"""Typed views of the generated gRPC client stubs the agent calls.

gRPC's code generator writes its stubs without types; these protocols give each method
the agent calls the request and response types of its RPC, so those calls are checked.
"""

from __future__ import annotations

from typing import Protocol

import grpc

from astra._gen.astra.v1 import node_service_pb2 as ns
from astra._gen.astra.v1 import node_service_pb2_grpc, resource_service_pb2_grpc
from astra._gen.astra.v1 import resource_service_pb2 as rs


class ResourceStub(Protocol):
    """The Resource service's methods the agent calls."""

    RegisterNode: grpc.aio.UnaryUnaryMultiCallable[rs.RegisterNodeRequest, rs.RegisterNodeResponse]
    Heartbeat: grpc.aio.StreamStreamMultiCallable[rs.HeartbeatRequest, rs.HeartbeatResponse]
    DrainNode: grpc.aio.UnaryUnaryMultiCallable[rs.DrainNodeRequest, rs.DrainNodeResponse]
    DeleteNode: grpc.aio.UnaryUnaryMultiCallable[rs.DeleteNodeRequest, rs.DeleteNodeResponse]
    GetNode: grpc.aio.UnaryUnaryMultiCallable[rs.GetNodeRequest, rs.GetNodeResponse]


class NodeStub(Protocol):
    """The Node service's methods the agent calls."""

    WatchAssignments: grpc.aio.UnaryStreamMultiCallable[
        ns.WatchAssignmentsRequest, ns.WatchAssignmentsResponse
    ]
    ReportReplicaStatus: grpc.aio.UnaryUnaryMultiCallable[
        ns.ReportReplicaStatusRequest, ns.ReportReplicaStatusResponse
    ]


def resource_stub(channel: grpc.aio.Channel) -> ResourceStub:
    """The Resource service's stub on ``channel``."""
    stub: ResourceStub = resource_service_pb2_grpc.ResourceServiceStub(channel)
    return stub


def node_stub(channel: grpc.aio.Channel) -> NodeStub:
    """The Node service's stub on ``channel``."""
    stub: NodeStub = node_service_pb2_grpc.NodeServiceStub(channel)
    return stub
