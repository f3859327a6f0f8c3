"""The control plane an agent talks to, in the test process: the Resource and Node
services on one loopback port, on a real etcd, restartable on the same port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from astra._gen.astra.v1 import node_pb2, resource_service_pb2, resource_service_pb2_grpc
from astra.rpc import Backoff, open_channel
from astra.server import Server
from astra.store import Store
from astra.testing import free_port
from services.node import NodeService
from services.resource import ResourceService

#: Fast membership for tests: beats every 0.2 s, dead after 1.5 s of silence.
HEARTBEAT_INTERVAL = 0.2
DEAD_AFTER = 1.5


class ControlPlane:
    """Resource + Node services at :attr:`address`; :meth:`stop` and :meth:`start` keep it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.address = f"127.0.0.1:{free_port()}"
        self._running: contextlib.AsyncExitStack | None = None
        self._channel = open_channel(self.address, backoff=Backoff(base=0.05, cap=0.2))
        self.resources = resource_service_pb2_grpc.ResourceServiceStub(self._channel)

    async def start(self) -> None:
        stack = contextlib.AsyncExitStack()
        resource = ResourceService(
            self.store,
            address=self.address,
            heartbeat_interval=HEARTBEAT_INTERVAL,
            dead_after=DEAD_AFTER,
        )
        node = NodeService(self.store)
        server = Server(self.address, grace=0.2)
        resource.add_to(server)
        node.add_to(server)
        await resource.start()
        stack.push_async_callback(resource.shutdown)
        await stack.enter_async_context(node)
        await stack.enter_async_context(server)
        self._running = stack

    async def stop(self) -> None:
        if self._running is not None:
            await self._running.aclose()
            self._running = None

    async def node(self, node_id: str) -> node_pb2.Node | None:
        """The node as the Resource service has it; ``None`` once it is gone."""
        try:
            response = await self.resources.GetNode(
                resource_service_pb2.GetNodeRequest(name=f"nodes/{node_id}")
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return response.node

    async def close(self) -> None:
        await self.stop()
        await self._channel.close()


@contextlib.asynccontextmanager
async def control_plane(store: Store) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(store)
    try:
        await plane.start()
        yield plane
    finally:
        await plane.close()
