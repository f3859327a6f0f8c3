"""WatchCluster: a snapshot, coalesced deltas with pool summaries, resume, usage."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from astra import keys
from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra.records import AllocRecord
from astra.store import Store
from tests.services.resource.conftest import Replica, heartbeat


def _pools(message: rs.WatchClusterResponse) -> dict[tuple[str, str], node_pb2.PoolSummary]:
    return {(pool.accelerator, pool.zone): pool for pool in message.pools}


async def _next(watch: grpc.aio.UnaryStreamCall) -> rs.WatchClusterResponse:
    return await asyncio.wait_for(watch.read(), 5)


async def _snapshot(watch: grpc.aio.UnaryStreamCall) -> rs.WatchClusterResponse:
    """The snapshot, after checking the progress message that follows it."""
    snapshot, progress = await _next(watch), await _next(watch)
    assert snapshot.snapshot
    assert progress == rs.WatchClusterResponse(revision=snapshot.revision)
    return snapshot


async def _register_fleet(replica: Replica) -> None:
    await replica.register("nodes/a1", zone="zone-a", accelerator="nvidia-l4", gpus=1)
    await replica.register("nodes/a2", zone="zone-a", accelerator="nvidia-l4", gpus=1)
    await replica.register("nodes/b1", zone="zone-b")


async def test_a_subscriber_gets_a_snapshot_of_every_node_and_pool_then_progress(replica: Replica):
    await _register_fleet(replica)

    watch = replica.stub.WatchCluster(rs.WatchClusterRequest())
    snapshot = await _snapshot(watch)
    watch.cancel()

    assert snapshot.revision > 0
    assert sorted(node.name for node in snapshot.nodes) == ["nodes/a1", "nodes/a2", "nodes/b1"]
    pools = _pools(snapshot)
    assert pools.keys() == {("nvidia-l4", "zone-a"), ("", "zone-b")}
    l4 = pools["nvidia-l4", "zone-a"]
    assert (l4.ready_nodes, l4.draining_nodes, l4.dead_nodes) == (2, 0, 0)
    assert (l4.capacity.cpu_millis, l4.capacity.gpus, l4.free.gpus) == (16000, 2, 2)


async def test_deltas_carry_changed_nodes_removals_and_only_the_pools_that_changed(
    replica: Replica,
):
    await _register_fleet(replica)
    watch = replica.stub.WatchCluster(rs.WatchClusterRequest(omit_usage=True))
    snapshot = await _snapshot(watch)

    await replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/a1", reason="PreStop"))
    drained = await _next(watch)
    await replica.stub.DeleteNode(rs.DeleteNodeRequest(name="nodes/b1"))
    removed = await _next(watch)
    watch.cancel()

    assert not drained.snapshot and drained.revision > snapshot.revision
    assert [(node.name, node.phase) for node in drained.nodes] == [
        ("nodes/a1", node_pb2.NODE_PHASE_DRAINING)
    ]
    l4 = _pools(drained)["nvidia-l4", "zone-a"]
    assert _pools(drained).keys() == {("nvidia-l4", "zone-a")}
    assert (l4.ready_nodes, l4.draining_nodes, l4.capacity.gpus) == (1, 1, 1)
    assert list(removed.removed_nodes) == ["nodes/b1"] and not removed.nodes
    assert _pools(removed)["", "zone-b"].ready_nodes == 0


async def test_changes_within_a_tick_reach_a_subscriber_as_one_delta(store: Store, start_replica):
    replica = await start_replica(store, tick=1.0)
    watch = replica.stub.WatchCluster(rs.WatchClusterRequest(omit_usage=True))
    await _snapshot(watch)

    await asyncio.gather(*(replica.register(f"nodes/n{index}") for index in range(10)))
    seen: set[str] = set()
    deltas = 0
    while len(seen) < 10:
        deltas += 1
        seen |= {node.name for node in (await _next(watch)).nodes}
    watch.cancel()

    assert deltas <= 2  # ten registrations, at most split by one tick boundary


async def test_a_subscriber_resumes_from_a_revision_with_only_what_it_missed(replica: Replica):
    await _register_fleet(replica)
    watch = replica.stub.WatchCluster(rs.WatchClusterRequest())
    snapshot = await _snapshot(watch)
    watch.cancel()

    await replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/a1"))
    await replica.stub.DeleteNode(rs.DeleteNodeRequest(name="nodes/b1"))
    await replica.register("nodes/c1", zone="zone-c")
    resumed = replica.stub.WatchCluster(
        rs.WatchClusterRequest(start_revision=snapshot.revision + 1)
    )
    caught_up = await _next(resumed)
    await replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/a2"))
    live = await _next(resumed)
    resumed.cancel()

    assert not caught_up.snapshot and caught_up.revision > snapshot.revision
    assert {node.name: node.phase for node in caught_up.nodes} == {
        "nodes/a1": node_pb2.NODE_PHASE_DRAINING,
        "nodes/c1": node_pb2.NODE_PHASE_READY,
    }
    assert list(caught_up.removed_nodes) == ["nodes/b1"]
    assert _pools(caught_up).keys() == {("nvidia-l4", "zone-a"), ("", "zone-b"), ("", "zone-c")}
    assert [node.name for node in live.nodes] == ["nodes/a2"]


async def test_resuming_before_what_a_replica_remembers_is_out_of_range(
    store: Store, start_replica
):
    first = await start_replica(store)
    await _register_fleet(first)
    late = await start_replica(store)  # its memory of removals starts now

    watch = late.stub.WatchCluster(rs.WatchClusterRequest(start_revision=1))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _next(watch)

    assert caught.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert "watch again from 0" in caught.value.details()


async def test_usage_reaches_only_subscribers_that_want_it_and_only_when_it_moved(replica: Replica):
    node = await replica.register("nodes/n1")
    with_usage = replica.stub.WatchCluster(rs.WatchClusterRequest())
    without = replica.stub.WatchCluster(rs.WatchClusterRequest(omit_usage=True))
    await _snapshot(with_usage), await _snapshot(without)
    call = replica.stub.Heartbeat()

    await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(node, cpu=0.2)]))
    first = await _next(with_usage)
    await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(node, cpu=0.21)]))  # below the step
    await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(node, cpu=0.9)]))
    second = await _next(with_usage)
    await replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/n1"))
    transition = await _next(without)
    for stream in (with_usage, without, call):
        stream.cancel()

    assert [round(n.usage.cpu_utilization, 2) for n in first.nodes] == [0.2]
    assert [round(n.usage.cpu_utilization, 2) for n in second.nodes] == [0.9]
    assert [n.phase for n in transition.nodes] == [
        node_pb2.NODE_PHASE_DRAINING
    ]  # no usage delta before it
    assert not transition.nodes[0].HasField("usage")


async def test_allocations_show_on_the_node_and_in_the_pools_free_resources(
    replica: Replica, store: Store
):
    await replica.register("nodes/n1", cpu_millis=8000, gpus=2, accelerator="nvidia-l4")
    watch = replica.stub.WatchCluster(rs.WatchClusterRequest(omit_usage=True))
    await _snapshot(watch)

    placed = AllocRecord(node_id="n1", replicas={"apps/a/replicas/r1": [3000, 1 << 30, 1]})
    await store.put(keys.alloc("n1"), placed.to_bytes())
    delta = await _next(watch)
    watch.cancel()

    (node,) = delta.nodes
    assert (node.allocated.cpu_millis, node.allocated.gpus) == (3000, 1)
    pool = _pools(delta)["nvidia-l4", "zone-a"]
    assert (pool.capacity.cpu_millis, pool.free.cpu_millis, pool.free.gpus) == (8000, 5000, 1)
