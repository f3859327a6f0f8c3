"""etcd stops under load: heartbeats go on, transitions are held, then written in order."""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from astra import keys
from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra.records import NodeRecord
from astra.store import EventType, Store, open_store
from astra.testing import EtcdProcess
from tests.services.resource.conftest import Replica, eventually, heartbeat


class _Load:
    """Heartbeats of ``beating`` nodes every 50 ms on one stream, collecting directives."""

    def __init__(self, replica: Replica, nodes: dict[str, node_pb2.Node]) -> None:
        self.nodes = nodes
        self.beating = set(nodes)
        self.directives: list[rs.HeartbeatDirective] = []
        self.rounds = 0
        self._call = replica.stub.Heartbeat()

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        try:
            while True:
                batch = [heartbeat(self.nodes[name]) for name in sorted(self.beating)] * 20  # load
                await self._call.write(rs.HeartbeatRequest(heartbeats=batch))
                self.rounds += 1
                await asyncio.sleep(0.05)
        finally:
            reader.cancel()
            self._call.cancel()

    async def _read(self) -> None:
        while (response := await self._call.read()) is not grpc.aio.EOF:
            self.directives.extend(response.directives)


async def _history(store: Store, since: int, until: int) -> list[tuple[str, str]]:
    """Node events after revision ``since`` up to ``until``: (node id, phase or "DELETED")."""
    events: list[tuple[str, str]] = []
    async for batch in store.watch(keys.NODES, start_revision=since + 1):
        for event in batch:
            node = event.kv.key[len(keys.NODES) :]
            if event.type is EventType.DELETE:
                events.append((node, "DELETED"))
            else:
                record = NodeRecord.from_bytes(event.kv.value)
                events.append((node, f"{record.phase}/g{record.generation}"))
        if batch[-1].kv.mod_revision >= until:
            break
    return events


async def test_transitions_during_an_etcd_outage_are_held_and_written_in_order(
    etcd_server: EtcdProcess, etcd_store: Store, start_replica
):
    replica = await start_replica(etcd_store, dead_after=0.6)
    nodes = {f"nodes/n{i}": await replica.register(f"nodes/n{i}") for i in range(6)}
    load = _Load(replica, nodes)
    before = await etcd_store.current_revision()
    beating = asyncio.create_task(load.run())
    try:
        await eventually(lambda: load.rounds >= 3)
        await asyncio.to_thread(etcd_server.stop)  # threads: the replica shares this loop
        try:
            drained = (
                await replica.stub.DrainNode(
                    rs.DrainNodeRequest(name="nodes/n0", reason="PreStop"), timeout=15
                )
            ).node
            load.beating -= {"nodes/n4", "nodes/n5"}  # these two go silent
            await eventually(
                lambda: all(
                    replica.service.registry.members[n].phase == "DEAD"
                    for n in ("nodes/n4", "nodes/n5")
                )
            )
            joined = load.nodes["nodes/n6"] = await replica.register("nodes/n6")
            load.beating.add("nodes/n6")
            updated = await replica.register("nodes/n1", cpu_millis=4000)
            await replica.stub.DeleteNode(rs.DeleteNodeRequest(name="nodes/n2"), timeout=15)
            load.beating -= {"nodes/n2"}
            rounds = load.rounds
            await eventually(lambda: load.rounds >= rounds + 10)  # heartbeats still flow

            assert (drained.phase, drained.phase_reason) == (
                node_pb2.NODE_PHASE_DRAINING,
                "PreStop",
            )
            assert joined.phase == node_pb2.NODE_PHASE_READY and len(joined.uid) == 32
            assert (updated.generation, updated.uid) == (2, nodes["nodes/n1"].uid)
            assert len(replica.service.outbox) == 6
            assert not replica.service.outbox.healthy
        finally:
            await asyncio.to_thread(etcd_server.start)

        await eventually(lambda: len(replica.service.outbox) == 0, timeout=30)
        async with await open_store(etcd_server.url) as fresh:
            history = await _history(fresh, before, await fresh.current_revision())
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating

    dead = {("n4", "DEAD/g1"), ("n5", "DEAD/g1")}
    assert history[0] == ("n0", "DRAINING/g1")
    assert set(history[1:3]) == dead
    assert history[3:] == [("n6", "READY/g1"), ("n1", "READY/g2"), ("n2", "DELETED")]
    assert (await replica.get("nodes/n6")).uid == joined.uid  # the uid answered while held
    assert {d.node for d in load.directives if d.action == rs.HEARTBEAT_ACTION_DRAIN} == {
        "nodes/n0"
    }
    assert not [d for d in load.directives if d.action != rs.HEARTBEAT_ACTION_DRAIN]
