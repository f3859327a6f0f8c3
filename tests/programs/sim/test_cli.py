"""``astra sim nodes``: a real process of simulated nodes, controlled from stdin."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid

from astra._gen.astra.v1 import node_pb2
from tests.node_agent.agent_process import ROOT, environment
from tests.node_agent.control_plane import DEAD_AFTER, HEARTBEAT_INTERVAL, ControlPlane
from tests.node_agent.waiting import eventually


async def test_sim_nodes_runs_a_fleet_that_obeys_its_controls_and_leaves(
    plane: ControlPlane,
) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:6]}-"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "programs.cli", "sim", "nodes", "--count", "40",
        "--batch-size", "16", "--prefix", prefix, "--api-address", plane.address,
        "--heartbeat-interval", str(HEARTBEAT_INTERVAL), "--leave",
        cwd=ROOT, env=environment(), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:

        async def phase(index: int) -> int | None:
            node = await plane.node(f"{prefix}{index:02d}")
            return None if node is None else node.phase

        async def every_node_ready() -> bool:
            return [await phase(index) for index in range(40)] == [node_pb2.NODE_PHASE_READY] * 40

        await eventually(every_node_ready, timeout=60, what="40 simulated nodes READY")

        process.stdin.write(b"silence 3\ndrain 4\nstats\nbogus\n")
        await process.stdin.drain()
        lines = [(await asyncio.wait_for(process.stdout.readline(), 10)).decode() for _ in range(3)]
        assert lines[0].startswith(f"silence nodes/{prefix}03")
        assert lines[1].startswith(f"drain nodes/{prefix}04")
        assert lines[2].startswith("39/40 registered, 1 left")

        async def silent_one_dead() -> bool:
            return await phase(3) == node_pb2.NODE_PHASE_DEAD

        await eventually(silent_one_dead, timeout=DEAD_AFTER + 5, what="the silenced node DEAD")
        assert await phase(4) is None  # drained and gone
        assert await phase(5) == node_pb2.NODE_PHASE_READY

        process.send_signal(signal.SIGTERM)
        _, errors = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, errors.decode()
        assert b"unknown command 'bogus'" in errors
        assert [await phase(index) for index in range(40)] == [
            None
        ] * 40  # --leave deregistered them
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
