"""Workers learn their Ray head's address from the app's owner: once the head's agent
reports it, every worker of that cluster (and a worker placed there later) gets it in
its record and on its node's assignment stream; a record changed meanwhile is never
overwritten."""

from __future__ import annotations

import asyncio
import dataclasses

from google.protobuf import field_mask_pb2

from astra import keys
from astra._gen.astra.v1 import app_pb2, node_service_pb2, replica_pb2
from astra._gen.astra.v1 import app_service_pb2 as aps
from astra.records import ReplicaRecord, ReplicaRole
from astra.store import Store
from services.app._heads import link_workers
from tests.node_agent.waiting import eventually
from tests.services.app.plane import Plane, spec

HEAD, WORKER = replica_pb2.REPLICA_ROLE_HEAD, replica_pb2.REPLICA_ROLE_WORKER
C0_HEAD = "127.0.0.2:40001"


async def report_head(control: Plane, head: replica_pb2.Replica, address: str) -> None:
    """What the head's agent reports once its Ray head runs."""
    report = node_service_pb2.ReplicaStatusReport(
        replica=head.name, phase=replica_pb2.REPLICA_PHASE_STARTING, ray_head_address=address
    )
    await control.nodes.ReportReplicaStatus(
        node_service_pb2.ReportReplicaStatusRequest(node=head.node, reports=[report])
    )


async def heads_of(control: Plane) -> dict[str, set[str]]:
    """The head addresses the workers of each cluster hold."""
    found: dict[str, set[str]] = {}
    for replica in await control.replicas("fed"):
        if replica.role == WORKER:
            found.setdefault(replica.ray_cluster, set()).add(replica.ray_head_address)
    return found


async def test_workers_get_their_heads_address_and_so_do_later_ones(control: Plane) -> None:
    async with control.fleet(4):
        ray = app_pb2.RayClusterSpec(clusters=2, workers_per_cluster=1)
        await control.create("fed", spec(replicas=4, ray=ray))
        await control.settled("fed", placed=4)
        assert await heads_of(control) == {"c0": {""}, "c1": {""}}
        replicas = await control.replicas("fed")
        head = next(r for r in replicas if r.role == HEAD and r.ray_cluster == "c0")
        worker = next(r for r in replicas if r.role == WORKER and r.ray_cluster == "c0")
        stream = control.nodes.WatchAssignments(
            node_service_pb2.WatchAssignmentsRequest(node=worker.node)
        )
        await report_head(control, head, C0_HEAD)

        async def linked() -> bool:
            return await heads_of(control) == {"c0": {C0_HEAD}, "c1": {""}}

        await eventually(linked, what="c0's worker linked to its head, c1's still waiting")

        async def assigned() -> str:
            async for message in stream:
                for replica in message.replicas:
                    if replica.name == worker.name and replica.ray_head_address:
                        return replica.ray_head_address
            raise AssertionError("the assignment stream ended")

        assert await asyncio.wait_for(assigned(), timeout=10) == C0_HEAD, (
            "the worker's agent is told"
        )
        stream.cancel()

        patch = app_pb2.App(
            name="apps/fed", ray=app_pb2.RayClusterSpec(clusters=2, workers_per_cluster=2)
        )
        mask = field_mask_pb2.FieldMask(paths=["ray"])
        await control.apps.UpdateApp(aps.UpdateAppRequest(app=patch, update_mask=mask))
        await control.settled("fed", placed=6)

        async def later_linked() -> bool:
            found = await heads_of(control)
            return (
                found == {"c0": {C0_HEAD}, "c1": {""}}
                and len([r for r in await control.replicas("fed") if r.ray_cluster == "c0"]) == 3
            )

        await eventually(later_linked, what="c0's new worker linked too")


async def test_a_worker_changed_since_it_was_read_is_not_overwritten(store: Store) -> None:
    head = ReplicaRecord(
        app_id="a", replica_id="c0-head", node_id="n0", ray_cluster="c0",
        role=ReplicaRole.HEAD.value, ray_head_address=C0_HEAD,
    )  # fmt: skip
    worker = ReplicaRecord(
        app_id="a", replica_id="c0-w0", node_id="n1", ray_cluster="c0",
        role=ReplicaRole.WORKER.value,
    )  # fmt: skip
    for record in (head, worker):
        await store.put(keys.replica(record.app_id, record.replica_id), record.to_bytes())
    stored = [
        (kv, ReplicaRecord.from_bytes(kv.value))
        for kv in (await store.range(keys.replicas_of("a"))).kvs
    ]
    reported = dataclasses.replace(worker, phase="STARTING", message="joining")
    await store.put(keys.replica("a", "c0-w0"), reported.to_bytes())

    assert not await link_workers(store, stored), "a stale read must not win"
    kv = await store.get(keys.replica("a", "c0-w0"))
    assert kv is not None
    assert ReplicaRecord.from_bytes(kv.value).message == "joining"

    fresh = [
        (kv, ReplicaRecord.from_bytes(kv.value))
        for kv in (await store.range(keys.replicas_of("a"))).kvs
    ]
    assert await link_workers(store, fresh)
    kv = await store.get(keys.replica("a", "c0-w0"))
    assert kv is not None
    linked = ReplicaRecord.from_bytes(kv.value)
    assert (linked.ray_head_address, linked.message) == (C0_HEAD, "joining")
    assert await link_workers(store, [(kv, linked)]), "nothing left to write"
