"""Several replicas on one etcd split the nodes; a replica's death moves its nodes, alive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc

from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra._gen.astra.v1 import resource_service_pb2_grpc as rs_grpc
from astra.store import Store
from astra.testing import EtcdProcess, free_port, wait_for_port
from tests.services.resource.conftest import Replica, eventually, heartbeat, make_node

ROOT = Path(__file__).resolve().parents[3]


async def _register_at_owner(
    stubs: dict[str, rs_grpc.ResourceServiceStub], first: str, name: str
) -> tuple[str, node_pb2.Node]:
    """Register ``name`` where the replica at ``first`` says; returns the owner's address."""
    request = rs.RegisterNodeRequest(node=make_node(name))
    response = await stubs[first].RegisterNode(request, timeout=10)
    if not response.redirect_address:
        return first, response.node
    owner = response.redirect_address
    again = await stubs[owner].RegisterNode(request, timeout=10)
    assert not again.redirect_address
    return owner, again.node


async def test_two_replicas_split_the_nodes_and_redirect_to_the_owner(
    etcd_store: Store, start_replica
):
    a = await start_replica(etcd_store)
    b = await start_replica(etcd_store)

    await eventually(lambda: all(len(r.service.ownership.replicas) == 2 for r in (a, b)))
    stubs = {a.address: a.stub, b.address: b.stub}
    owners = {}
    for index in range(30):
        owners[f"nodes/n{index}"] = await _register_at_owner(stubs, a.address, f"nodes/n{index}")

    assert {owner for owner, _ in owners.values()} == {a.address, b.address}
    for name, (owner, node) in owners.items():
        assert a.service.ownership.owner(name) == b.service.ownership.owner(name)
        other = b if owner == a.address else a
        call = other.stub.Heartbeat()
        await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(node)]))
        (directive,) = (await call.read()).directives
        call.cancel()
        assert (directive.action, directive.redirect_address) == (
            rs.HEARTBEAT_ACTION_REDIRECT,
            owner,
        )
        assert name in _owned(a) | _owned(b)
    assert _owned(a) & _owned(b) == set()


def _owned(replica: Replica) -> set[str]:
    return set(replica.service.registry.members)


@contextlib.contextmanager
def _replica_process(
    etcd: EtcdProcess, *, dead_after: float, lease_ttl: int
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "programs.cli",
            "serve",
            "resource",
            "--store-url",
            etcd.url,
            "--api-address",
            f"127.0.0.1:{port}",
            "--dead-after",
            str(dead_after),
            "--heartbeat-interval",
            "0.2",
            "--lease-ttl",
            str(lease_ttl),
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_for_port(port, timeout=60, process=process)
        yield f"127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


class _Agents:
    """Agents of many nodes: every round each node heartbeats the replica it was last told
    is its owner; a redirect moves it, a replica that does not answer sends it to ``fallback``."""

    def __init__(
        self,
        nodes: dict[str, node_pb2.Node],
        targets: dict[str, str],
        channels: dict[str, grpc.aio.Channel],
        fallback: str,
    ) -> None:
        self.nodes, self.targets, self._fallback = nodes, targets, fallback
        self._stubs = {
            address: rs_grpc.ResourceServiceStub(channel) for address, channel in channels.items()
        }
        self.quiet_rounds = 0  # rounds in a row where every node was accepted where it went
        self.reregistered: list[str] = []

    async def _round(self) -> bool:
        quiet = True
        for address in set(self.targets.values()):
            names = [name for name, target in self.targets.items() if target == address]
            request = rs.HeartbeatRequest(
                heartbeats=[heartbeat(self.nodes[name]) for name in names]
            )
            try:
                call = self._stubs[address].Heartbeat(timeout=2)
                await call.write(request)
                await call.done_writing()
                directives = [d async for response in call for d in response.directives]
            except grpc.aio.AioRpcError:
                self.targets.update(dict.fromkeys(names, self._fallback))
                quiet = False
                continue
            for directive in directives:
                quiet = False
                if directive.action == rs.HEARTBEAT_ACTION_REDIRECT:
                    self.targets[directive.node] = directive.redirect_address
                else:
                    self.reregistered.append(directive.node)
        return quiet

    async def run(self) -> None:
        while True:
            self.quiet_rounds = self.quiet_rounds + 1 if await self._round() else 0
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def _running(coroutine: object) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(coroutine)  # type: ignore[arg-type]
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_when_a_replica_dies_its_nodes_move_to_the_others_without_being_declared_dead(
    etcd_server: EtcdProcess, etcd_store: Store, start_replica
):
    dead_after = 1.0
    survivor = await start_replica(etcd_store, dead_after=dead_after)
    with _replica_process(etcd_server, dead_after=dead_after, lease_ttl=2) as (doomed, process):
        await eventually(lambda: len(survivor.service.ownership.replicas) == 2, timeout=30)
        channels = {survivor.address: survivor.channel, doomed: grpc.aio.insecure_channel(doomed)}
        stubs = {
            address: rs_grpc.ResourceServiceStub(channel) for address, channel in channels.items()
        }
        registered = {
            f"nodes/n{i}": await _register_at_owner(stubs, survivor.address, f"nodes/n{i}")
            for i in range(20)
        }
        moved = {name for name, (owner, _) in registered.items() if owner == doomed}
        assert moved, "no node landed on the replica to kill"
        agents = _Agents(
            {n: node for n, (_, node) in registered.items()},
            {n: owner for n, (owner, _) in registered.items()},
            channels,
            fallback=survivor.address,
        )
        watch = survivor.stub.WatchCluster(rs.WatchClusterRequest(omit_usage=True))
        dead_seen: list[str] = []

        async def follow() -> None:
            async for message in watch:
                dead_seen.extend(
                    node.name for node in message.nodes if node.phase == node_pb2.NODE_PHASE_DEAD
                )

        async with _running(agents.run()), _running(follow()):
            await eventually(lambda: agents.quiet_rounds >= 3, timeout=20)
            process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await eventually(lambda: len(survivor.service.ownership.replicas) == 1, timeout=30)
            await eventually(lambda: moved <= survivor.service.registry.members.keys(), timeout=10)
            await eventually(
                lambda: agents.quiet_rounds >= 5, timeout=20
            )  # all accepted at the survivor
            await asyncio.sleep(
                max(0.0, killed + 3 * dead_after + 2 - time.monotonic())
            )  # past any grace
        await channels[doomed].close()

    assert dead_seen == []
    assert agents.reregistered == []
    assert set(agents.targets.values()) == {survivor.address}
    for name in registered:
        assert (await survivor.get(name)).phase == node_pb2.NODE_PHASE_READY
