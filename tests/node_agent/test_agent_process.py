"""A real agent process: it registers the machine, heartbeats its usage, runs what is
placed on it, and on SIGTERM or `prestop` drains, waits for its replicas (or the drain
timeout), deregisters and exits 0."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import psutil
import pytest

import astra
from astra._gen.astra.v1 import node_pb2
from astra.records import ReplicaRecord
from astra.store import Store
from tests.node_agent.agent_process import ROOT, AgentProcess, command, environment
from tests.node_agent.control_plane import ControlPlane
from tests.node_agent.waiting import eventually
from tests.services.node.placement import new_replica, place, stored


class StartAgent(Protocol):
    async def __call__(
        self, node_id: str, *args: str, env: dict[str, str] | None = None
    ) -> AgentProcess: ...


@pytest.fixture
async def agents(plane: ControlPlane, tmp_path: Path) -> AsyncIterator[StartAgent]:
    """Starts agent processes (killed at the end if still running) and waits until each
    has registered."""
    started: list[AgentProcess] = []

    async def start(node_id: str, *args: str, env: dict[str, str] | None = None) -> AgentProcess:
        agent = await AgentProcess.start(plane, node_id, tmp_path, *args, env=env)
        started.append(agent)
        await eventually(
            lambda: _registered(plane, node_id, agent), timeout=30, what=f"{node_id} registered"
        )
        return agent

    yield start
    for agent in started:
        await agent.close()


async def _registered(plane: ControlPlane, node_id: str, agent: AgentProcess) -> bool:
    assert agent.process.returncode is None, f"the agent exited:\n{agent.output()}"
    return await plane.node(node_id) is not None


async def phases(store: Store, replicas: list[ReplicaRecord]) -> list[str]:
    return [(await stored(store, replica)).phase for replica in replicas]


async def serving(store: Store, node_id: str, count: int) -> list[ReplicaRecord]:
    """Place ``count`` replicas on the node and wait until the agent serves them."""
    replicas = [new_replica(node_id) for _ in range(count)]
    await place(store, node_id, replicas)
    await eventually(lambda: _all(store, replicas, "READY"), what="replicas READY")
    return replicas


async def _all(store: Store, replicas: list[ReplicaRecord], phase: str) -> bool:
    return await phases(store, replicas) == [phase] * len(replicas)


async def test_the_agent_registers_the_machine_and_heartbeats_its_usage(
    agents: StartAgent, plane: ControlPlane, node_id: str
) -> None:
    await agents(node_id)
    node = await plane.node(node_id)
    assert node is not None
    assert node.phase == node_pb2.NODE_PHASE_READY
    assert node.capacity.cpu_millis == (psutil.cpu_count(logical=True) or 0) * 1000
    assert node.capacity.memory_bytes == psutil.virtual_memory().total
    assert (node.capacity.gpus, node.accelerator, list(node.gpus)) == (0, "", [])
    assert (dict(node.labels), node.zone, node.address) == ({"pool": "test"}, "z1", "127.0.0.1")
    assert node.agent_version == astra.__version__

    async def usage_arrived() -> bool:
        current = await plane.node(node_id)
        return current is not None and current.usage.memory_used_bytes > 0

    await eventually(usage_arrived, what="heartbeat usage")
    node = await plane.node(node_id)
    assert node is not None
    await eventually(
        lambda: _heartbeat_after(plane, node_id, node.heartbeat_time.ToNanoseconds()),
        what="a later beat",
    )


async def _heartbeat_after(plane: ControlPlane, node_id: str, nanos: int) -> bool:
    node = await plane.node(node_id)
    return node is not None and node.heartbeat_time.ToNanoseconds() > nanos


async def test_sigterm_drains_waits_for_the_replicas_then_deregisters_and_exits_0(
    agents: StartAgent, plane: ControlPlane, store: Store, node_id: str
) -> None:
    agent = await agents(node_id, env={"ASTRA_TEST_DRAIN_SECONDS": "1"})
    replicas = await serving(store, node_id, 2)

    start = time.monotonic()
    agent.terminate()

    async def draining() -> bool:
        node = await plane.node(node_id)
        return node is not None and node.phase == node_pb2.NODE_PHASE_DRAINING

    await eventually(draining, what="node DRAINING")
    assert agent.process.returncode is None  # still waiting for its replicas
    assert set(await phases(store, replicas)) <= {"DRAINING", "READY"}

    assert await agent.exit_code() == 0, agent.output()
    assert time.monotonic() - start >= 1.0  # it waited for the replicas' drain
    assert await plane.node(node_id) is None
    assert await phases(store, replicas) == ["DRAINED", "DRAINED"]


async def test_prestop_makes_the_running_agent_leave(
    agents: StartAgent, plane: ControlPlane, store: Store, node_id: str
) -> None:
    agent = await agents(node_id, env={"ASTRA_TEST_DRAIN_SECONDS": "0.5"})
    replicas = await serving(store, node_id, 1)

    prestop = await asyncio.create_subprocess_exec(
        *command(plane, node_id), "prestop", "--timeout", "30",
        cwd=ROOT, env=environment(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(prestop.communicate(), timeout=60)

    assert prestop.returncode == 0, output.decode()
    assert f"nodes/{node_id} left the fleet" in output.decode()
    assert await agent.exit_code() == 0, agent.output()
    assert await plane.node(node_id) is None
    assert await phases(store, replicas) == ["DRAINED"]


async def test_a_replica_that_never_drains_is_given_up_at_the_drain_timeout(
    agents: StartAgent, plane: ControlPlane, store: Store, node_id: str
) -> None:
    agent = await agents(node_id, "--drain-timeout", "1", env={"ASTRA_TEST_DRAIN_HANG": "1"})
    replicas = await serving(store, node_id, 1)

    start = time.monotonic()
    agent.terminate()
    assert await agent.exit_code() == 0, agent.output()
    assert 1.0 <= time.monotonic() - start < 10
    assert await plane.node(node_id) is None
    assert await phases(store, replicas) == ["DRAINING"]
    assert "drain timeout (1.0s) passed with replicas still draining" in agent.output()
