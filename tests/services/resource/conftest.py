"""Resource service replicas on real stores, served over loopback gRPC.

``store_url`` runs a test once on the in-memory embedded store and once on the session's
real etcd (wiped of AstraRay's keys first); tests that need etcd's process (outages,
leases across processes) take ``etcd_store`` instead.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from astra import keys
from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra._gen.astra.v1 import resource_service_pb2_grpc as rs_grpc
from astra.server import Server
from astra.store import Store, open_store
from astra.testing import EtcdProcess, free_port
from services.resource import ResourceService

_CHANNEL = [("grpc.max_receive_message_length", -1)]


@dataclass
class Replica:
    """A started Resource replica and a client of it."""

    service: ResourceService
    server: Server
    channel: grpc.aio.Channel
    stub: rs_grpc.ResourceServiceStub

    @property
    def address(self) -> str:
        return self.server.address

    async def register(self, name: str, **fields: Any) -> node_pb2.Node:
        response = await self.stub.RegisterNode(
            rs.RegisterNodeRequest(node=make_node(name, **fields)), timeout=10
        )
        assert not response.redirect_address, f"{name} is owned by {response.redirect_address}"
        return response.node

    async def get(self, name: str) -> node_pb2.Node:
        return (await self.stub.GetNode(rs.GetNodeRequest(name=name), timeout=10)).node

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.shutdown(grace=0.1)
        await self.service.shutdown(grace=1.0)


StartReplica = Callable[..., Awaitable[Replica]]


def make_node(
    name: str, *, cpu_millis: int = 8000, memory_bytes: int = 32 << 30, gpus: int = 0, **fields: Any
) -> node_pb2.Node:
    """A valid node to register; ``fields`` override any field of ``Node``."""
    node = node_pb2.Node(**({"name": name, "address": "10.0.0.7", "zone": "zone-a"} | fields))
    node.capacity.cpu_millis, node.capacity.memory_bytes, node.capacity.gpus = (
        cpu_millis,
        memory_bytes,
        gpus,
    )
    return node


def heartbeat(
    node: node_pb2.Node, *, cpu: float = 0.25, memory: int = 1 << 30, gpu: float = 0.0
) -> rs.NodeHeartbeat:
    usage = node_pb2.NodeUsage(cpu_utilization=cpu, memory_used_bytes=memory, gpu_utilization=gpu)
    return rs.NodeHeartbeat(node=node.name, uid=node.uid, usage=usage)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0, every: float = 0.02
) -> None:
    """Wait until ``condition()`` (a function or a coroutine function) holds; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await _holds(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = condition()
    return await result if inspect.isawaitable(result) else result


@pytest.fixture
async def etcd_store(etcd_server: EtcdProcess) -> AsyncIterator[Store]:
    """The session's etcd without any AstraRay key left by earlier tests."""
    etcd_server.start()  # a test that stopped it always restarts it; this is a no-op then
    async with await open_store(etcd_server.url) as store:
        await store.delete(keys.ROOT, prefix=True)
        yield store


@pytest.fixture(params=["memory", "etcd"])
async def store_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """Each test twice: on the in-memory embedded store and on a real etcd."""
    if request.param == "memory":
        yield "memory://"
        return
    etcd: EtcdProcess = request.getfixturevalue("etcd_server")
    etcd.start()
    async with await open_store(etcd.url) as store:
        await store.delete(keys.ROOT, prefix=True)
    yield etcd.url


@pytest.fixture
async def start_replica() -> AsyncIterator[StartReplica]:
    """``await start_replica(store, **service_options)``: a Resource replica on a free
    loopback port; all are stopped after the test."""
    replicas: list[Replica] = []

    async def start(store: Store, **options: Any) -> Replica:
        address = f"127.0.0.1:{free_port()}"
        options = {
            "dead_after": 2.0,
            "heartbeat_interval": 0.5,
            "tick": 0.05,
            "lease_ttl": 2,
        } | options
        service = ResourceService(store, address=address, **options)
        server = Server(address, grace=0.1)
        service.add_to(server)
        await service.start()
        await server.start()
        channel = grpc.aio.insecure_channel(address, options=_CHANNEL)
        replica = Replica(service, server, channel, rs_grpc.ResourceServiceStub(channel))
        replicas.append(replica)
        return replica

    yield start
    for replica in reversed(replicas):
        await replica.stop()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with await open_store(store_url) as opened:
        yield opened


@pytest.fixture
async def replica(store: Store, start_replica: StartReplica) -> Replica:
    """One replica on ``store`` (memory, then etcd)."""
    return await start_replica(store)
