"""A Node service on a real etcd, served over loopback gRPC."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from astra._gen.astra.v1 import node_service_pb2_grpc
from astra.server import Server
from astra.store import Store, open_store
from astra.testing import EtcdProcess
from services.node import NodeService


@pytest.fixture
async def store(etcd_server: EtcdProcess) -> AsyncIterator[Store]:
    async with await open_store(etcd_server.url) as opened:
        yield opened


@pytest.fixture
async def node_server(store: Store) -> AsyncIterator[Server]:
    """A gRPC server on a free loopback port serving the Node service."""
    service = NodeService(store)
    server = Server("127.0.0.1:0", grace=0.2)
    service.add_to(server)
    async with service, server:
        yield server


@pytest.fixture
async def stub(node_server: Server) -> AsyncIterator[node_service_pb2_grpc.NodeServiceStub]:
    async with grpc.aio.insecure_channel(node_server.address) as channel:
        yield node_service_pb2_grpc.NodeServiceStub(channel)


@pytest.fixture
def node_id() -> str:
    return f"node-{uuid.uuid4().hex[:10]}"
