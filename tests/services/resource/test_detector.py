"""Failure detection: the deadline wheel alone, then DEAD through a real server."""

from __future__ import annotations

import asyncio
import time

import grpc

from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from astra.store import Store
from services.resource._detector import Clock, DeadlineWheel, FailureDetector
from tests.services.resource.conftest import eventually, heartbeat


class _Node:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.slot = None


def _detector(resolution: float = 0.1) -> tuple[DeadlineWheel, FailureDetector, list[_Node]]:
    clock = Clock(tolerance=0.25)
    wheel = DeadlineWheel(resolution, start=clock.now())
    dead: list[_Node] = []
    return wheel, FailureDetector(wheel, dead.append, clock=clock, tick=resolution), dead


def test_a_node_is_dead_after_its_deadline_and_not_before():
    wheel, detector, dead = _detector()
    now = time.monotonic()
    node = _Node(now + 1.0)
    wheel.schedule(node)

    assert detector.check(now + 0.95) == 0
    assert detector.check(now + 1.2) == 1
    assert dead == [node]
    assert node.slot is None
    assert detector.check(now + 5) == 0  # once


def test_a_deadline_moved_later_is_rechecked_lazily_not_rebucketed():
    wheel, detector, dead = _detector()
    now = time.monotonic()
    node = _Node(now + 1.0)
    wheel.schedule(node)
    for beat in range(1, 30):  # heartbeats only move the deadline
        node.deadline = now + beat * 0.1 + 1.0
    assert len(wheel) == 1

    assert detector.check(now + 1.5) == 0
    assert len(wheel) == 1  # moved once, to the bucket of its current deadline
    assert detector.check(now + 4.1) == 1
    assert dead == [node]


def test_an_unscheduled_node_is_skipped_and_a_rescheduled_one_checked_once():
    wheel, detector, dead = _detector()
    now = time.monotonic()
    gone, moved = _Node(now + 0.5), _Node(now + 2.0)
    for node in (gone, moved):
        wheel.schedule(node)
    wheel.unschedule(gone)
    moved.deadline = now + 0.5  # earlier: must be scheduled again to count
    wheel.schedule(moved)

    assert detector.check(now + 3.0) == 1
    assert dead == [moved]


def test_work_per_check_is_the_due_buckets_not_the_fleet():
    wheel, detector, dead = _detector(resolution=0.05)
    now = time.monotonic()
    nodes = [_Node(now + 3.0 + index * 1e-4) for index in range(10_000)]
    for node in nodes:
        wheel.schedule(node)

    assert detector.check(now + 1.0) == 0
    assert len(wheel) == 10_000  # nothing was due, nothing was touched
    later = now + 3.5
    assert detector.check(later) == len(dead)
    assert all(node.deadline <= later for node in dead)
    # Exactly the nodes whose deadline passed, give or take the last bucket not yet closed.
    assert {node for node in nodes if node.deadline <= later - 0.05} <= set(dead)


def test_the_clock_leaves_out_stalls_beyond_its_tolerance():
    clock = Clock(tolerance=0.25)
    before = clock.now()
    clock.late(0.1)
    assert clock.stalled == 0.0
    clock.late(2.25)
    assert clock.stalled == 2.0
    assert clock.now() - before < 0.5


async def test_a_stalled_replica_does_not_blame_nodes_for_heartbeats_it_could_not_read(
    store: Store, start_replica
):
    replica = await start_replica(store, dead_after=0.5)
    node = await replica.register("nodes/n1")
    call = replica.stub.Heartbeat()
    await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(node)]))
    await asyncio.sleep(0.1)

    time.sleep(1.5)
    rounds = 0

    async def beat() -> bool:
        nonlocal rounds
        await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(node)]))
        rounds += 1
        return rounds == 10

    await eventually(beat, every=0.1)
    call.cancel()
    assert (await replica.get("nodes/n1")).phase == node_pb2.NODE_PHASE_READY
    assert replica.service.clock.stalled > 1.0


async def test_a_silent_node_is_dead_within_dead_after_and_a_tick(store: Store, start_replica):
    dead_after = 0.5
    replica = await start_replica(store, dead_after=dead_after)
    silent, alive = await replica.register("nodes/silent"), await replica.register("nodes/alive")
    watch = replica.stub.WatchCluster(rs.WatchClusterRequest(omit_usage=True))
    await watch.read()  # the snapshot
    call = replica.stub.Heartbeat()
    await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(silent), heartbeat(alive)]))
    last_heartbeat = time.monotonic()

    async def keep_alive() -> None:
        while True:
            await asyncio.sleep(0.1)
            await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(alive)]))

    beating = asyncio.create_task(keep_alive())
    try:
        while True:
            delta = await asyncio.wait_for(watch.read(), 5)
            dead = [node for node in delta.nodes if node.phase == node_pb2.NODE_PHASE_DEAD]
            if dead:
                break
        seen_after = time.monotonic() - last_heartbeat
    finally:
        beating.cancel()
        watch.cancel()

    assert [node.name for node in dead] == ["nodes/silent"]
    assert dead[0].phase_reason == "HeartbeatTimeout"
    assert dead_after <= seen_after <= dead_after + 0.4
    assert (await replica.get("nodes/alive")).phase == node_pb2.NODE_PHASE_READY
    pools = {(pool.zone, pool.accelerator): pool for pool in delta.pools}
    assert (pools["zone-a", ""].ready_nodes, pools["zone-a", ""].dead_nodes) == (1, 1)


async def test_a_dead_node_that_heartbeats_is_told_to_register_and_comes_back_ready(
    store: Store, start_replica
):
    replica = await start_replica(store, dead_after=0.3)
    node = await replica.register("nodes/n1")

    async def dead() -> bool:
        return (await replica.get("nodes/n1")).phase == node_pb2.NODE_PHASE_DEAD

    await eventually(dead)
    call = replica.stub.Heartbeat()
    await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(node)]))
    directives = (await call.read()).directives
    assert [(d.node, d.action) for d in directives] == [
        ("nodes/n1", rs.HEARTBEAT_ACTION_REREGISTER)
    ]
    assert "DEAD" in directives[0].message

    back = await replica.register("nodes/n1")
    await call.write(rs.HeartbeatRequest(heartbeats=[heartbeat(back)]))
    await call.done_writing()

    assert await call.read() is grpc.aio.EOF  # no directive: the node is back
    assert (back.uid, back.phase, back.generation) == (node.uid, node_pb2.NODE_PHASE_READY, 1)
