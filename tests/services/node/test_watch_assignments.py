"""WatchAssignments: a snapshot, then only what changed, resumable from a revision."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from astra._gen.astra.v1 import node_service_pb2 as pb
from astra._gen.astra.v1 import node_service_pb2_grpc, replica_pb2
from astra.store import Store
from services.node import AssignmentHub
from tests.services.node.placement import new_replica, place, update

Stub = node_service_pb2_grpc.NodeServiceStub
Call = grpc.aio.UnaryStreamCall[pb.WatchAssignmentsRequest, pb.WatchAssignmentsResponse]


@contextlib.asynccontextmanager
async def watching(stub: Stub, node_id: str, start_revision: int = 0) -> AsyncIterator[Call]:
    call = stub.WatchAssignments(
        pb.WatchAssignmentsRequest(node=f"nodes/{node_id}", start_revision=start_revision)
    )
    try:
        yield call
    finally:
        call.cancel()


async def next_message(call: Call) -> pb.WatchAssignmentsResponse:
    message = await asyncio.wait_for(call.read(), timeout=10)
    assert isinstance(message, pb.WatchAssignmentsResponse), message
    return message


async def test_snapshot_holds_every_assigned_replica_with_its_placement(
    stub: Stub, store: Store, node_id: str
) -> None:
    first, second = new_replica(node_id), new_replica(node_id)
    revision = await place(store, node_id, [first, second])
    await place(store, "other-" + node_id, [new_replica("other-" + node_id)])

    async with watching(stub, node_id) as call:
        snapshot = await next_message(call)

    assert snapshot.snapshot and snapshot.revision >= revision
    assert sorted(replica.name for replica in snapshot.replicas) == sorted(
        [first.name, second.name]
    )
    replica = next(replica for replica in snapshot.replicas if replica.name == first.name)
    assert replica.node == f"nodes/{node_id}"
    assert replica.role == replica_pb2.REPLICA_ROLE_WORKER and replica.ray_cluster == "c0"
    assert (replica.resources.cpu_millis, replica.resources.memory_bytes) == (500, 1 << 30)
    assert replica.models[0].name == "resnet" and replica.models[0].format == 1  # MODEL_FORMAT_ONNX
    assert replica.phase == replica_pb2.REPLICA_PHASE_PENDING
    assert not snapshot.removed_replicas


async def test_snapshot_of_a_node_with_nothing_placed_is_empty(stub: Stub, node_id: str) -> None:
    async with watching(stub, node_id) as call:
        snapshot = await next_message(call)
    assert snapshot.snapshot and snapshot.revision > 0 and not snapshot.replicas


async def test_changes_carry_only_what_changed(stub: Stub, store: Store, node_id: str) -> None:
    first = new_replica(node_id)
    await place(store, node_id, [first])
    async with watching(stub, node_id) as call:
        await next_message(call)

        second = new_replica(node_id)
        placed = await place(store, node_id, [second])
        added = await next_message(call)
        assert not added.snapshot and added.revision == placed
        assert [replica.name for replica in added.replicas] == [
            second.name
        ] and not added.removed_replicas

        first.ray_head_address = "10.0.0.7:6379"  # its head came up: the agent must learn it
        changed_at = await update(store, first)
        changed = await next_message(call)
        assert changed.revision == changed_at
        assert [(r.name, r.ray_head_address) for r in changed.replicas] == [
            (first.name, "10.0.0.7:6379")
        ]

        removed_at = await place(store, node_id, remove=[first])
        removed = await next_message(call)
        assert removed.revision == removed_at
        assert list(removed.removed_replicas) == [first.name] and not removed.replicas


async def test_status_reports_are_not_echoed_back(stub: Stub, store: Store, node_id: str) -> None:
    replica = new_replica(node_id)
    await place(store, node_id, [replica])
    async with watching(stub, node_id) as call:
        await next_message(call)
        await stub.ReportReplicaStatus(
            pb.ReportReplicaStatusRequest(
                node=f"nodes/{node_id}",
                reports=[
                    pb.ReplicaStatusReport(
                        replica=replica.name,
                        phase=replica_pb2.REPLICA_PHASE_READY,
                        endpoint="127.0.0.1:9000",
                    )
                ],
            )
        )
        later = new_replica(node_id)
        await place(store, node_id, [later])
        # The next message is the new placement, not the status the agent wrote itself.
        message = await next_message(call)
        assert [r.name for r in message.replicas] == [later.name]


async def test_other_nodes_changes_do_not_reach_a_stream(
    stub: Stub, store: Store, node_id: str
) -> None:
    async with watching(stub, node_id) as mine, watching(stub, "other-" + node_id) as theirs:
        await next_message(mine)
        await next_message(theirs)
        await place(store, "other-" + node_id, [new_replica("other-" + node_id)])
        await next_message(theirs)
        own = new_replica(node_id)
        await place(store, node_id, [own])
        message = await next_message(mine)
        assert [r.name for r in message.replicas] == [own.name]


async def test_resuming_sends_what_changed_since_the_revision(
    stub: Stub, store: Store, node_id: str
) -> None:
    kept, dropped, changed = new_replica(node_id), new_replica(node_id), new_replica(node_id)
    await place(store, node_id, [kept, dropped, changed])
    async with watching(stub, node_id) as call:
        seen = (await next_message(call)).revision

    added = new_replica(node_id)
    await place(store, node_id, [added], remove=[dropped])
    changed.app_generation = 2
    await update(store, changed)

    async with watching(stub, node_id, start_revision=seen + 1) as call:
        resumed = await next_message(call)
    assert not resumed.snapshot
    assert sorted(r.name for r in resumed.replicas) == sorted([added.name, changed.name])
    assert list(resumed.removed_replicas) == [dropped.name]


async def test_resuming_from_a_compacted_revision_is_out_of_range(
    stub: Stub, store: Store, node_id: str
) -> None:
    old = await place(store, node_id, [new_replica(node_id)])
    await place(store, node_id, [new_replica(node_id)])
    await store.compact(await store.current_revision())

    async with watching(stub, node_id, start_revision=old) as call:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await next_message(call)
    assert raised.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert "watch again from 0" in (raised.value.details() or "")


async def test_malformed_requests_name_the_field(stub: Stub) -> None:
    call = stub.WatchAssignments(pb.WatchAssignmentsRequest(node="machines/x", start_revision=-1))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await next_message(call)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "node: must be nodes/{node_id}" in (raised.value.details() or "")
    assert "start_revision: must be >= 0" in (raised.value.details() or "")


async def test_a_slow_stream_gets_changes_coalesced(store: Store, node_id: str) -> None:
    async with AssignmentHub(store) as hub:
        subscription, first = await hub.subscribe(node_id)
        assert first.upserts == {} and not first.removed
        replicas = [new_replica(node_id) for _ in range(5)]
        for replica in replicas:
            await place(store, node_id, [replica])
        await place(store, node_id, remove=replicas[:2])
        last = await place(store, node_id, [new_replica(node_id)])
        while hub.revision < last:
            await asyncio.sleep(0.01)

        delta = await asyncio.wait_for(subscription.next(), timeout=5)
        hub.unsubscribe(subscription)
    # Seven commits, one delta: each replica appears once, in its final state.
    assert delta.revision == last
    assert set(delta.upserts) >= {r.name for r in replicas[2:]} and len(delta.upserts) == 4
    assert delta.removed == {r.name for r in replicas[:2]}
