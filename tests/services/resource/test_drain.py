"""DrainNode and DeleteNode: idempotence, etags, NOT_FOUND, and no garbage left behind."""

from __future__ import annotations

import grpc
import pytest

from astra import keys
from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra.records import AllocRecord
from astra.store import Store
from tests.services.resource.conftest import Replica, eventually


async def _status(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code()


async def test_draining_an_unknown_node_is_not_found(replica: Replica):
    assert (
        await _status(replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/ghost")))
        is grpc.StatusCode.NOT_FOUND
    )


async def test_draining_marks_the_node_draining_and_draining_again_changes_nothing(
    replica: Replica, store: Store
):
    await replica.register("nodes/n1")

    drained = (
        await replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/n1", reason="PreStop"))
    ).node
    revision = (await store.get(keys.node("n1"))).mod_revision
    again = (
        await replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/n1", reason="Other"))
    ).node

    assert (drained.phase, drained.phase_reason) == (node_pb2.NODE_PHASE_DRAINING, "PreStop")
    assert again == drained
    assert (await store.get(keys.node("n1"))).mod_revision == revision


async def test_a_drained_node_registering_again_keeps_draining(replica: Replica):
    first = await replica.register("nodes/n1")
    await replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/n1"))

    again = await replica.register("nodes/n1", cpu_millis=4000)

    assert again.uid == first.uid
    assert (again.phase, again.generation) == (node_pb2.NODE_PHASE_DRAINING, 2)


async def test_delete_honours_the_etag_and_then_the_node_is_gone(replica: Replica, store: Store):
    node = await replica.register("nodes/n1")
    await replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/n1"))

    stale = replica.stub.DeleteNode(rs.DeleteNodeRequest(name="nodes/n1", etag=node.etag))
    assert await _status(stale) is grpc.StatusCode.ABORTED
    current = await replica.get("nodes/n1")
    await replica.stub.DeleteNode(rs.DeleteNodeRequest(name="nodes/n1", etag=current.etag))

    assert (
        await _status(replica.stub.GetNode(rs.GetNodeRequest(name="nodes/n1")))
        is grpc.StatusCode.NOT_FOUND
    )
    assert await store.get(keys.node("n1")) is None
    assert (
        await _status(replica.stub.DeleteNode(rs.DeleteNodeRequest(name="nodes/n1")))
        is grpc.StatusCode.NOT_FOUND
    )


async def test_delete_removes_an_empty_alloc_and_leaves_one_with_replicas(
    replica: Replica, store: Store
):
    await replica.register("nodes/empty")
    await replica.register("nodes/busy")
    await store.put(keys.alloc("empty"), AllocRecord(node_id="empty").to_bytes())
    busy = AllocRecord(node_id="busy", replicas={"apps/a/replicas/r1": [1000, 1 << 30, 0]})
    await store.put(keys.alloc("busy"), busy.to_bytes())

    async def allocs_seen() -> bool:
        return {"nodes/empty", "nodes/busy"} <= replica.service.view.allocs.keys()

    await eventually(allocs_seen)
    for name in ("nodes/empty", "nodes/busy"):
        await replica.stub.DeleteNode(rs.DeleteNodeRequest(name=name))

    assert await store.get(keys.alloc("empty")) is None
    assert AllocRecord.from_bytes((await store.get(keys.alloc("busy"))).value) == busy


async def test_draining_a_dead_node_is_a_failed_precondition(store: Store, start_replica):
    replica = await start_replica(store, dead_after=0.3)
    await replica.register("nodes/n1")

    async def dead() -> bool:
        return (await replica.get("nodes/n1")).phase == node_pb2.NODE_PHASE_DEAD

    await eventually(dead)
    drain = replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/n1"))
    assert await _status(drain) is grpc.StatusCode.FAILED_PRECONDITION
