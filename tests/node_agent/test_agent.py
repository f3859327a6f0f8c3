"""The agent's membership in-process, against the real Resource and Node services:
re-registering when forgotten, riding out a control-plane restart, leaving on a drain
from elsewhere, and refusing to retry what can never succeed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from astra._gen.astra.v1 import node_pb2, resource_service_pb2
from node_agent import AgentConfig, Gpu, Machine, NodeAgent, RegistrationError
from tests.node_agent.control_plane import HEARTBEAT_INTERVAL, ControlPlane
from tests.node_agent.runtimes import TcpRuntime
from tests.node_agent.waiting import eventually

MACHINE = Machine(
    cpu_cores=4, memory_bytes=16 << 30, gpus=(Gpu("NVIDIA L4", 23034 << 20, "GPU-1"),)
)


def config(plane: ControlPlane, node_id: str, **overrides: object) -> AgentConfig:
    values: dict[str, object] = {
        "node_id": node_id,
        "server": plane.address,
        "address": "127.0.0.1",
        "heartbeat_interval": HEARTBEAT_INTERVAL,
        "drain_timeout": 5.0,
        "backoff_base": 0.05,
        "backoff_cap": 0.3,
    }
    return AgentConfig(**(values | overrides))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(agent: NodeAgent) -> AsyncIterator[asyncio.Task[int]]:
    task = asyncio.create_task(agent.run())
    try:
        yield task
    finally:
        if not task.done():
            agent.request_drain("test over")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=15)


async def registered(plane: ControlPlane, node_id: str) -> node_pb2.Node:
    await eventually(lambda: _exists(plane, node_id), what=f"{node_id} registered")
    node = await plane.node(node_id)
    assert node is not None
    return node


async def _exists(plane: ControlPlane, node_id: str) -> bool:
    return await plane.node(node_id) is not None


async def test_a_gpu_machine_registers_its_gpus_and_accelerator(
    plane: ControlPlane, node_id: str
) -> None:
    async with running(NodeAgent(config(plane, node_id), machine=MACHINE)):
        node = await registered(plane, node_id)
    assert (node.capacity.cpu_millis, node.capacity.memory_bytes, node.capacity.gpus) == (
        4000,
        16 << 30,
        1,
    )
    assert node.accelerator == "nvidia-l4"
    assert [(gpu.model, gpu.memory_bytes, gpu.uuid) for gpu in node.gpus] == [
        ("NVIDIA L4", 23034 << 20, "GPU-1")
    ]


async def test_a_forgotten_node_registers_again(plane: ControlPlane, node_id: str) -> None:
    async with running(NodeAgent(config(plane, node_id), machine=MACHINE)):
        first = await registered(plane, node_id)
        await plane.resources.DeleteNode(
            resource_service_pb2.DeleteNodeRequest(name=f"nodes/{node_id}")
        )

        async def back_with_a_new_uid() -> bool:
            node = await plane.node(node_id)
            return node is not None and node.uid != first.uid

        await eventually(back_with_a_new_uid, what="registered again after REREGISTER")


async def test_the_agent_rides_out_a_control_plane_restart(
    plane: ControlPlane, node_id: str
) -> None:
    agent = NodeAgent(config(plane, node_id), machine=MACHINE)
    async with running(agent) as task:
        before = await registered(plane, node_id)
        await plane.stop()
        await asyncio.sleep(3 * HEARTBEAT_INTERVAL)  # the streams notice; let them retry a while
        assert not task.done()
        await plane.start()

        async def beating_again() -> bool:
            node = await plane.node(node_id)
            return (
                node is not None
                and node.heartbeat_time.ToNanoseconds() > before.heartbeat_time.ToNanoseconds()
            )

        await eventually(beating_again, what="heartbeats after the restart")
        node = await plane.node(node_id)
        assert (
            node is not None and node.uid == before.uid and node.phase == node_pb2.NODE_PHASE_READY
        )


async def test_a_drain_from_elsewhere_makes_the_agent_leave(
    plane: ControlPlane, node_id: str
) -> None:
    runtimes: list[TcpRuntime] = []

    def make_runtime(report: object) -> TcpRuntime:
        runtimes.append(TcpRuntime(report))  # type: ignore[arg-type]
        return runtimes[-1]

    agent = NodeAgent(config(plane, node_id), machine=MACHINE, runtime=make_runtime)
    async with running(agent) as task:
        await registered(plane, node_id)
        await plane.resources.DrainNode(
            resource_service_pb2.DrainNodeRequest(name=f"nodes/{node_id}", reason="Ops")
        )
        assert await asyncio.wait_for(task, timeout=15) == 0
    assert await plane.node(node_id) is None
    assert runtimes and not runtimes[0].running


async def test_a_drain_before_joining_exits_at_once(plane: ControlPlane, node_id: str) -> None:
    await plane.stop()  # nobody answers: registration keeps retrying
    agent = NodeAgent(config(plane, node_id), machine=MACHINE)
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(0.3)
    agent.request_drain("SIGTERM")
    assert await asyncio.wait_for(task, timeout=5) == 0


async def test_a_node_the_service_refuses_is_not_retried(plane: ControlPlane) -> None:
    agent = NodeAgent(config(plane, "bad/name"), machine=MACHINE)
    with pytest.raises(RegistrationError, match="refused"):
        await asyncio.wait_for(agent.run(), timeout=10)
