"""The agent follows its assignments: replicas placed start in the runtime, their status
reaches the store, removed ones stop, and a lost stream resumes without restarting
what runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from astra.records import ReplicaRecord
from astra.server import Server, Tasks
from astra.store import Store
from node_agent import AgentConfig, Assignments, StatusReporter
from services.node import NodeService
from tests.node_agent.runtimes import TcpRuntime
from tests.node_agent.waiting import eventually
from tests.services.node.placement import new_replica, place, stored


@dataclass
class Agent:
    """The agent's assignment side, running."""

    assignments: Assignments
    reporter: StatusReporter
    runtime: TcpRuntime | None

    @property
    def tcp(self) -> TcpRuntime:
        assert self.runtime is not None, "this agent runs no runtime"
        return self.runtime


@contextlib.asynccontextmanager
async def follow(address: str, node_id: str, *, with_runtime: bool = True) -> AsyncIterator[Agent]:
    config = AgentConfig(
        node_id=node_id, server=address, address="127.0.0.1", backoff_base=0.01, backoff_cap=0.2
    )
    tasks = Tasks()
    async with grpc.aio.insecure_channel(address) as channel:

        async def stop(names: list[str]) -> None:
            await assignments.stop(names)

        reporter = StatusReporter(channel, config, on_removed=stop)
        runtime = TcpRuntime(reporter.report) if with_runtime else None
        assignments = Assignments(channel, config, runtime=runtime, reporter=reporter)
        tasks.spawn(reporter.run(), name="reporter")
        tasks.spawn(assignments.run(), name="assignments")
        try:
            yield Agent(assignments, reporter, runtime)
        finally:
            await tasks.close()
            await assignments.close()


@pytest.fixture
async def agent(node_server: Server, node_id: str) -> AsyncIterator[Agent]:
    async with follow(node_server.address, node_id) as running:
        yield running


async def read_line(endpoint: str) -> str:
    host, _, port = endpoint.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        return (await asyncio.wait_for(reader.readline(), timeout=5)).decode().strip()
    finally:
        writer.close()


async def test_placed_replicas_start_and_become_ready_in_the_store(
    agent: Agent, store: Store, node_id: str
) -> None:
    first, second = new_replica(node_id), new_replica(node_id)
    await place(store, node_id, [first, second])

    async def both_ready() -> bool:
        return [(await stored(store, replica)).phase for replica in (first, second)] == [
            "READY",
            "READY",
        ]

    await eventually(both_ready, what="both replicas READY in the store")
    record = await stored(store, first)
    assert record.execution_provider == "CPUExecutionProvider"
    assert await read_line(record.endpoint) == first.name  # the endpoint really serves
    assert agent.tcp.running == {first.name, second.name}


async def test_a_removed_replica_is_stopped(agent: Agent, store: Store, node_id: str) -> None:
    leaving, staying = new_replica(node_id), new_replica(node_id)
    await place(store, node_id, [leaving, staying])
    await eventually(lambda: agent.tcp.running == {leaving.name, staying.name})
    await place(store, node_id, remove=[leaving])
    await eventually(lambda: agent.tcp.running == {staying.name})
    assert set(agent.assignments.replicas) == {staying.name}


async def test_a_placement_change_reaches_the_runtime(
    agent: Agent, store: Store, node_id: str
) -> None:
    replica = new_replica(node_id)
    await place(store, node_id, [replica])
    await eventually(lambda: replica.name in agent.tcp.running)
    replica.ray_head_address = "127.0.0.1:6379"
    await place(store, node_id, [replica])
    await eventually(lambda: agent.tcp.specs[replica.name].ray_head_address == "127.0.0.1:6379")
    assert agent.tcp.starts[replica.name] == 2


async def phase_is(store: Store, replica: ReplicaRecord, wanted: str) -> bool:
    return (await stored(store, replica)).phase == wanted


async def test_a_retired_replica_drains_without_restarting(
    agent: Agent, store: Store, node_id: str
) -> None:
    replica = new_replica(node_id)
    await place(store, node_id, [replica])
    await eventually(lambda: phase_is(store, replica, "READY"), what="READY")
    replica.retire_time = 1.0
    await place(store, node_id, [replica])
    await eventually(lambda: phase_is(store, replica, "DRAINED"), what="DRAINED once retired")
    assert agent.tcp.starts[replica.name] == 1  # drained, never started again


async def test_a_replica_retired_before_it_started_here_is_reported_drained(
    node_server: Server, store: Store, node_id: str
) -> None:
    replica = new_replica(node_id)
    replica.retire_time = 1.0
    await place(store, node_id, [replica])
    async with follow(node_server.address, node_id, with_runtime=False):
        await eventually(lambda: phase_is(store, replica, "DRAINED"), what="DRAINED")


async def test_a_lost_stream_resumes_without_restarting_what_runs(
    store: Store, node_id: str
) -> None:
    service = NodeService(store)
    server = Server("127.0.0.1:0", grace=0.1)
    service.add_to(server)
    async with service:
        await server.start()
        address = server.address
        kept, dropped = new_replica(node_id), new_replica(node_id)
        await place(store, node_id, [kept, dropped])
        async with follow(address, node_id) as agent:
            runtime = agent.tcp
            await eventually(lambda: runtime.running == {kept.name, dropped.name})
            seen = agent.assignments.revision

            await server.shutdown()  # the Node service goes away; the store changes meanwhile
            added = new_replica(node_id)
            changed_at = await place(store, node_id, [added], remove=[dropped])
            restarted = Server(address, grace=0.1)
            service.add_to(restarted)
            async with restarted:
                await eventually(lambda: runtime.running == {kept.name, added.name}, what="resumed")
                assert agent.assignments.revision >= changed_at > seen
                assert runtime.starts[kept.name] == 1


async def test_without_a_runtime_assignments_are_only_acknowledged(
    node_server: Server, store: Store, node_id: str
) -> None:
    replica = new_replica(node_id)
    await place(store, node_id, [replica])
    async with follow(node_server.address, node_id, with_runtime=False) as agent:
        await eventually(lambda: replica.name in agent.assignments.replicas)
        assert agent.assignments.replicas[replica.name].models[0].name == "resnet"
    assert (await stored(store, replica)).phase == "PENDING"


async def test_draining_settles_every_replica_and_the_store_sees_it(
    agent: Agent, store: Store, node_id: str
) -> None:
    replicas = [new_replica(node_id) for _ in range(3)]
    await place(store, node_id, replicas)
    await eventually(lambda: len(agent.tcp.running) == 3)

    async def reported() -> bool:  # the runtime runs it before the agent reports READY
        return bool((await stored(store, replicas[0])).endpoint)

    await eventually(reported, what="the endpoint reported to the store")
    endpoint = (await stored(store, replicas[0])).endpoint
    host, _, port = endpoint.rpartition(":")
    answer, in_flight = await asyncio.open_connection(host, int(port))  # a request in flight
    assert (await asyncio.wait_for(answer.readline(), timeout=5)).strip() == replicas[
        0
    ].name.encode()

    draining = await agent.assignments.drain()
    assert sorted(draining) == sorted(r.name for r in replicas)
    loop = asyncio.get_running_loop()
    # The replica with a request in flight does not settle until the request ends.
    assert not await agent.reporter.wait_settled(draining, deadline=loop.time() + 0.3)
    assert agent.reporter.unsettled(draining) == [replicas[0].name]
    in_flight.close()
    assert await agent.reporter.wait_settled(draining, deadline=loop.time() + 5)
    assert await agent.reporter.flush(timeout=5)
    assert {(await stored(store, r)).phase for r in replicas} == {"DRAINED"}

    late = new_replica(node_id)  # placed on a draining node: not started
    await place(store, node_id, [late])
    await eventually(lambda: late.name in agent.assignments.replicas)
    assert late.name not in agent.tcp.starts
