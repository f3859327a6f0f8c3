"""``astra agent prestop``: what a Kubernetes PreStop hook runs to let the agent leave."""

from __future__ import annotations

import asyncio
import time

import grpc

from astra import telemetry
from astra._gen.astra.v1 import resource_service_pb2
from astra.rpc import TRANSIENT, Backoff, retry_call
from node_agent._stubs import resource_stub

#: How often the node is looked up while its agent drains.
_POLL = 0.2


async def prestop(server: str, node_id: str, *, timeout: float, reason: str = "PreStop") -> bool:
    """Drain node ``node_id`` and wait until its agent has left the fleet.

    The Resource service marks the node DRAINING (so it leaves every route at once) and
    tells its agent with the next heartbeat; the agent drains its replicas and
    deregisters. Returns ``True`` once the node is gone (or was not registered),
    ``False`` if it is still there after ``timeout`` seconds.

    Raises:
        grpc.aio.AioRpcError: the service answered with a final error.
    """
    name = f"nodes/{node_id}"
    deadline = time.monotonic() + timeout
    async with telemetry.channel(server) as channel:
        stub = resource_stub(channel)
        try:
            await retry_call(
                lambda: stub.DrainNode(
                    resource_service_pb2.DrainNodeRequest(name=name, reason=reason), timeout=5
                ),
                what=f"draining {name}",
                backoff=Backoff(),
                deadline=deadline,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return True
            raise
        while time.monotonic() < deadline:
            try:
                await stub.GetNode(resource_service_pb2.GetNodeRequest(name=name), timeout=5)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.NOT_FOUND:
                    return True
                if exc.code() not in TRANSIENT:
                    raise
            await asyncio.sleep(_POLL)
    return False
