"""SimFleet: many nodes in one process on the real API, heartbeating in batches, each
one able to go silent, drain, or follow the service's directives."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from astra._gen.astra.v1 import node_pb2, resource_service_pb2
from astra.server import Server
from astra.store import Store
from astra.testing import free_port
from programs.sim import SimFleet
from services.resource import ResourceService
from tests.node_agent.control_plane import DEAD_AFTER, HEARTBEAT_INTERVAL, ControlPlane
from tests.node_agent.waiting import eventually

COUNT = 120
BATCH = 25


@pytest.fixture
def prefix() -> str:
    return f"sim-{uuid.uuid4().hex[:6]}-"


@contextlib.asynccontextmanager
async def fleet_of(
    address: str, prefix: str, *, drain_seconds: float = 0.0
) -> AsyncIterator[SimFleet]:
    fleet = SimFleet(
        address,
        COUNT,
        prefix=prefix,
        batch_size=BATCH,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        drain_seconds=drain_seconds,
    )
    async with fleet:
        yield fleet


async def phases(plane: ControlPlane, fleet: SimFleet) -> dict[int, int]:
    """Every node of the fleet the service knows, by index -> phase."""
    found: dict[int, int] = {}
    token = ""
    while True:
        page = await plane.resources.ListNodes(
            resource_service_pb2.ListNodesRequest(
                page_size=5000, page_token=token, label_selector={"sim": "true"}
            )
        )
        for node in page.nodes:
            index = fleet.index_of(node.name)
            if index is not None:
                found[index] = node.phase
        if not page.next_page_token:
            return found
        token = page.next_page_token


async def beats_over(fleet: SimFleet, seconds: float) -> None:
    """Wait until every node has beaten for ``seconds`` more (counting beats, not time)."""
    target = fleet.stats.heartbeats + int(fleet.registered * seconds / HEARTBEAT_INTERVAL)
    await eventually(
        lambda: fleet.stats.heartbeats >= target, timeout=seconds * 5 + 10, what="heartbeats"
    )


async def test_every_node_registers_and_stays_ready_on_batched_heartbeats(
    plane: ControlPlane, prefix: str
) -> None:
    async with fleet_of(plane.address, prefix) as fleet:
        assert fleet.registered == COUNT and fleet.stats.refused == 0
        await beats_over(fleet, DEAD_AFTER * 2)  # longer than the failure detector waits
        assert await phases(plane, fleet) == dict.fromkeys(range(COUNT), node_pb2.NODE_PHASE_READY)
        # Heartbeats travel in batches: a request per batch per beat, not per node.
        assert fleet.stats.heartbeats / fleet.stats.requests > BATCH * 0.8
        node = await plane.node(fleet.node_id(7))
        assert node is not None and node.uid == fleet.uid(7) and node.labels["sim"] == "true"
        assert node.capacity.cpu_millis == 8000 and node.address == "127.0.0.1"


async def test_a_silent_node_is_found_dead_and_the_others_are_not(
    plane: ControlPlane, prefix: str
) -> None:
    async with fleet_of(plane.address, prefix) as fleet:
        fleet.silence(3)
        silenced = time.monotonic()

        async def dead() -> bool:
            return (await phases(plane, fleet)).get(3) == node_pb2.NODE_PHASE_DEAD

        await eventually(dead, timeout=DEAD_AFTER + 5, what="node 3 DEAD")
        assert time.monotonic() - silenced < DEAD_AFTER + 1.5
        current = await phases(plane, fleet)
        assert sum(phase == node_pb2.NODE_PHASE_READY for phase in current.values()) == COUNT - 1


async def test_a_drained_node_leaves_after_draining(plane: ControlPlane, prefix: str) -> None:
    async with fleet_of(plane.address, prefix, drain_seconds=0.5) as fleet:
        task = asyncio.ensure_future(fleet.drain(5))

        async def is_draining() -> bool:
            node = await plane.node(fleet.node_id(5))
            return node is not None and node.phase == node_pb2.NODE_PHASE_DRAINING

        await eventually(is_draining, what="node 5 DRAINING")
        await task
        assert fleet.has_left(5) and await plane.node(fleet.node_id(5)) is None
        assert fleet.registered == COUNT - 1


async def test_a_node_drained_by_the_service_leaves(plane: ControlPlane, prefix: str) -> None:
    async with fleet_of(plane.address, prefix) as fleet:
        await plane.resources.DrainNode(
            resource_service_pb2.DrainNodeRequest(name=fleet.name(9), reason="Ops")
        )
        await eventually(lambda: fleet.has_left(9), what="node 9 left")
        await eventually(lambda: _gone(plane, fleet.node_id(9)), what="node 9 deregistered")
        assert fleet.stats.directives["HEARTBEAT_ACTION_DRAIN"] >= 1


async def _gone(plane: ControlPlane, node_id: str) -> bool:
    return await plane.node(node_id) is None


async def test_a_forgotten_node_registers_again(plane: ControlPlane, prefix: str) -> None:
    async with fleet_of(plane.address, prefix) as fleet:
        old_uid = fleet.uid(11)
        await plane.resources.DeleteNode(
            resource_service_pb2.DeleteNodeRequest(name=fleet.name(11))
        )
        await eventually(
            lambda: fleet.uid(11) != old_uid and fleet.registered == COUNT, what="registered again"
        )
        node = await plane.node(fleet.node_id(11))
        assert node is not None and node.uid == fleet.uid(11)
        assert fleet.stats.directives["HEARTBEAT_ACTION_REREGISTER"] >= 1


async def test_nodes_follow_redirects_to_the_replica_that_owns_them(
    plane: ControlPlane, store: Store, prefix: str
) -> None:
    """A second Resource replica joins: the nodes it now owns are redirected there, and
    none of them is lost on the way."""
    async with fleet_of(plane.address, prefix) as fleet:
        address = f"127.0.0.1:{free_port()}"
        second = ResourceService(
            store, address=address, heartbeat_interval=HEARTBEAT_INTERVAL, dead_after=DEAD_AFTER
        )
        server = Server(address, grace=0.2)
        second.add_to(server)
        await second.start()
        try:
            async with server:
                await eventually(
                    lambda: fleet.stats.directives["HEARTBEAT_ACTION_REDIRECT"] > 0,
                    what="redirects",
                )
                await beats_over(fleet, DEAD_AFTER * 2)
                assert await phases(plane, fleet) == dict.fromkeys(
                    range(COUNT), node_pb2.NODE_PHASE_READY
                )
                moved = [index for index in range(COUNT) if fleet.address_of(index) == address]
                assert moved and fleet.stats.directives["HEARTBEAT_ACTION_REDIRECT"] >= len(moved)
        finally:
            await second.shutdown()
