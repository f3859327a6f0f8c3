"""Heartbeat streams: directives for nodes that must act, usage kept in memory only."""

from __future__ import annotations

import grpc
import pytest

from astra import keys
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra.store import Store
from tests.services.resource.conftest import Replica, eventually, heartbeat


async def _exchange(
    replica: Replica, *requests: rs.HeartbeatRequest
) -> list[rs.HeartbeatDirective]:
    """Send ``requests`` on one stream and collect every directive until it ends."""
    call = replica.stub.Heartbeat()
    for request in requests:
        await call.write(request)
    await call.done_writing()
    return [directive async for response in call for directive in response.directives]


async def test_a_heartbeat_of_an_unknown_node_asks_it_to_register_and_the_stream_goes_on(
    replica: Replica,
):
    known = await replica.register("nodes/known")

    directives = await _exchange(
        replica,
        rs.HeartbeatRequest(
            heartbeats=[rs.NodeHeartbeat(node="nodes/ghost", uid="x"), heartbeat(known)]
        ),
        rs.HeartbeatRequest(heartbeats=[heartbeat(known)]),
    )

    assert [(d.node, d.action) for d in directives] == [
        ("nodes/ghost", rs.HEARTBEAT_ACTION_REREGISTER)
    ]
    assert "NOT_FOUND" in directives[0].message and "RegisterNode" in directives[0].message


async def test_a_heartbeat_with_a_stale_uid_asks_the_node_to_register_again(replica: Replica):
    node = await replica.register("nodes/n1")
    stale = rs.NodeHeartbeat(node=node.name, uid="0" * 32)

    directives = await _exchange(replica, rs.HeartbeatRequest(heartbeats=[stale]))

    assert [(d.node, d.action) for d in directives] == [
        ("nodes/n1", rs.HEARTBEAT_ACTION_REREGISTER)
    ]
    assert node.uid in directives[0].message


async def test_heartbeats_keep_usage_in_memory_and_never_write_the_store(
    replica: Replica, store: Store
):
    node = await replica.register("nodes/n1")
    revision = (await store.get(keys.node("n1"))).mod_revision

    directives = await _exchange(
        replica,
        *(
            rs.HeartbeatRequest(heartbeats=[heartbeat(node, cpu=0.75, memory=5 << 30)])
            for _ in range(20)
        ),
    )

    assert directives == []
    got = await replica.get("nodes/n1")
    assert (got.usage.cpu_utilization, got.usage.memory_used_bytes) == (0.75, 5 << 30)
    assert got.heartbeat_time.seconds >= got.create_time.seconds
    assert (await store.get(keys.node("n1"))).mod_revision == revision


async def test_a_batch_answers_only_for_the_nodes_that_must_act(replica: Replica):
    nodes = [await replica.register(f"nodes/n{index}") for index in range(50)]
    await replica.stub.DrainNode(rs.DrainNodeRequest(name="nodes/n7", reason="PreStop"))

    directives = await _exchange(
        replica, rs.HeartbeatRequest(heartbeats=[heartbeat(node) for node in nodes])
    )

    assert [(d.node, d.action) for d in directives] == [("nodes/n7", rs.HEARTBEAT_ACTION_DRAIN)]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"cpu": 1.5}, "heartbeats[1].usage.cpu_utilization"),
        ({"gpu": -0.1}, "heartbeats[1].usage.gpu_utilization"),
        ({"memory": -1}, "heartbeats[1].usage.memory_used_bytes"),
    ],
)
async def test_an_out_of_range_usage_ends_the_stream_naming_the_field(replica: Replica, bad, field):
    node = await replica.register("nodes/n1")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _exchange(
            replica, rs.HeartbeatRequest(heartbeats=[heartbeat(node), heartbeat(node, **bad)])
        )

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in caught.value.details()


async def test_a_malformed_node_name_ends_the_stream_naming_the_field(replica: Replica):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _exchange(
            replica, rs.HeartbeatRequest(heartbeats=[rs.NodeHeartbeat(node="machines/x", uid="u")])
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "heartbeats[0].node" in caught.value.details()


async def test_a_node_that_keeps_heartbeating_stays_ready_past_dead_after(
    store: Store, start_replica
):
    replica = await start_replica(store, dead_after=0.4)
    node = await replica.register("nodes/n1")
    call = replica.stub.Heartbeat()
    ticks = 0

    async def beat() -> bool:
        nonlocal ticks
        await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(node)]))
        ticks += 1
        return ticks >= 15  # 15 x 0.1 s: well past dead_after

    await eventually(beat, every=0.1)
    await call.done_writing()
    assert [response async for response in call] == []
    assert (await replica.get("nodes/n1")).phase_reason == "Registered"
