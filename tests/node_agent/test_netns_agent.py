"""An agent on a host of its own, configured by flags alone, as a new user starts one:
``python -m node_agent --node-id n1 --node-address ADDR --api-address HOST:PORT`` run in
a network namespace whose only address besides loopback is ADDR, with no ``ASTRA_*``
variable in its environment. The control plane listens on this side of the link. Its
Ray node and its replica advertise ADDR, where the rest of the fleet can reach them,
never a loopback address."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from astra._gen.astra.v1 import app_pb2, resource_service_pb2
from astra.models import write_demo_model
from astra.store import open_store
from tests.node_agent.agent_process import ROOT, environment
from tests.node_agent.netns import Host, isolated_host
from tests.node_agent.waiting import eventually
from tests.services.app.plane import Plane, plane

#: Ray and the model starting on a busy two-core machine.
START = 240.0
pytestmark = pytest.mark.timeout(420)


@pytest.fixture
def host() -> Iterator[Host]:
    with isolated_host() as made:
        yield made


@pytest.fixture
async def control(host: Host) -> AsyncIterator[Plane]:
    """Every service on this side of the link; a node is dead only after 30 s of silence
    (Ray starting on a busy machine must not stall heartbeats into a death)."""
    async with (
        await open_store("memory://") as store,
        plane(store, host=host.peer, scheduler={}, dead_after=30.0) as started,
    ):
        yield started


def _host_of(address: str) -> str:
    return address.rpartition(":")[0]


async def _accepts(address: str) -> bool:
    """Whether something accepts TCP connections at ``address`` (``ip:port``)."""
    host, _, port = address.rpartition(":")
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
    writer.close()
    await writer.wait_closed()
    return True


async def test_an_agent_configured_by_flags_advertises_its_node_address(
    host: Host, control: Plane
) -> None:
    root = Path(tempfile.mkdtemp(prefix="a", dir="/tmp"))  # short: Ray's sockets live under it
    model = write_demo_model(root / "source")
    log = root / "agent.log"
    env = environment({"TMPDIR": str(root)})  # no ASTRA_*: the flags alone configure it
    argv = host.command(
        sys.executable, "-m", "node_agent", "--node-id", "n1", "--node-address", host.address,
        "--api-address", control.address, "--runtime", "node_agent.runtime:RayRuntime",
        "--state-dir", str(root / "state"), "--drain-timeout", "10",
    )  # fmt: skip
    with log.open("wb") as output:
        agent = await asyncio.create_subprocess_exec(
            *argv, cwd=ROOT, env=env, stdout=output, stderr=asyncio.subprocess.STDOUT
        )

    def agent_log() -> str:
        return log.read_text(errors="replace")[-4000:]

    try:
        await control.create(
            "demo",
            app_pb2.App(
                models=[
                    app_pb2.Model(
                        name="demo", version="1", uri=str(model.path), sha256=model.sha256,
                        format=app_pb2.MODEL_FORMAT_ONNX,
                    )
                ],
                replicas=1,
                resources=app_pb2.ReplicaResources(cpu_millis=500, memory_bytes=256 << 20),
            ),
        )  # fmt: skip

        async def serving() -> bool:
            assert agent.returncode is None, f"the agent exited:\n{agent_log()}"
            return (await control.app("demo")).replica_counts.ready == 1

        await eventually(serving, timeout=START, what="the replica READY")
        [replica] = await control.replicas("demo")
        node = await control.resources.GetNode(resource_service_pb2.GetNodeRequest(name="nodes/n1"))
        assert node.node.address == host.address
        # What the gateway is handed, and what a worker on another host joins.
        assert _host_of(replica.endpoint) == host.address, replica
        assert _host_of(replica.ray_head_address) == host.address, replica
        [raylet] = [
            process
            for process in psutil.Process(agent.pid).children(recursive=True)
            if process.name() == "raylet"
        ]
        assert f"--node_ip_address={host.address}" in raylet.cmdline()
        # Both are reached from this side of the link, as the rest of the fleet would.
        assert await _accepts(replica.endpoint) and await _accepts(replica.ray_head_address)
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)  # drains and deregisters
            try:
                await asyncio.wait_for(agent.wait(), 60)
            except TimeoutError:
                agent.kill()
                await agent.wait()
        shutil.rmtree(root, ignore_errors=True)
