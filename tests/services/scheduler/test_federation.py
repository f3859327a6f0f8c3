"""Ray federation through node loss: a lost worker is replaced in its cluster; a lost head
takes its whole cluster out of the routes at once and a replacement cluster serves once
it is ready."""

from __future__ import annotations

import asyncio

from astra._gen.astra.v1 import app_pb2, replica_pb2
from astra._gen.astra.v1 import scheduler_service_pb2 as ss
from programs.sim import SimFleet
from tests.node_agent.waiting import eventually
from tests.services.app.plane import Plane, spec

HEAD, WORKER = replica_pb2.REPLICA_ROLE_HEAD, replica_pb2.REPLICA_ROLE_WORKER


async def routed(control: Plane) -> dict[str, str]:
    """Replica name -> Ray cluster of every endpoint of resnet:1."""
    response = await control.scheduler.GetRoutes(ss.GetRoutesRequest(models=["resnet"]))
    return {
        endpoint.replica: endpoint.ray_cluster
        for route in response.routes
        for endpoint in route.endpoints
    }


async def federated(control: Plane, fleet: SimFleet) -> list[replica_pb2.Replica]:
    """Two Ray clusters of a head and two workers each, one replica per node, all READY."""
    app = spec(
        replicas=0,
        ray=app_pb2.RayClusterSpec(clusters=2, workers_per_cluster=2),
        placement=app_pb2.Placement(max_per_node=1),
    )
    await control.create("fed", app)
    await control.settled("fed", placed=6)
    replicas = await control.replicas("fed")
    await control.report(replicas)
    await eventually(lambda: _routed_count(control, 6), what="6 endpoints")
    return replicas


def silence(fleet: SimFleet, replica: replica_pb2.Replica) -> None:
    index = fleet.index_of(replica.node)
    assert index is not None
    fleet.silence(index)


async def test_a_lost_worker_is_replaced_in_its_own_cluster(control: Plane) -> None:
    async with control.fleet(8) as fleet:
        replicas = await federated(control, fleet)
        lost = next(r for r in replicas if r.role == WORKER and r.ray_cluster == "c0")
        silence(fleet, lost)

        async def replaced() -> bool:
            now = await control.replicas("fed")
            workers = [r for r in now if r.ray_cluster == "c0" and r.role == WORKER]
            return len(now) == 6 and len(workers) == 2 and all(r.node != lost.node for r in now)

        await eventually(replaced, what="a new worker in c0")
        now = {r.name: r for r in await control.replicas("fed")}
        assert sorted({r.ray_cluster for r in now.values()}) == ["c0", "c1"], "no new cluster"
        before = {r.name: r for r in replicas}
        for name, old in before.items():
            if old.role == HEAD or old.ray_cluster == "c1":
                assert now[name].node == old.node, f"{name} moved"
        fresh = [
            r for r in now.values() if r.node != before.get(r.name, r).node or r.name not in before
        ]
        assert len(fresh) == 1 and fresh[0].ray_cluster == "c0" and fresh[0].role == WORKER

        async def head_kept_serving() -> bool:
            return set(await routed(control)) == set(before) - {lost.name}

        await eventually(head_kept_serving, what="c0 served by its head and other worker")
        await control.report(fresh)
        await eventually(lambda: _routed_count(control, 6), what="the new worker routed")


async def test_a_lost_head_is_replaced_by_a_new_cluster_that_takes_the_traffic_once_ready(
    control: Plane,
) -> None:
    async with control.fleet(9) as fleet:
        replicas = await federated(control, fleet)
        head = next(r for r in replicas if r.role == HEAD and r.ray_cluster == "c1")
        stream = control.scheduler.WatchRoutes(ss.WatchRoutesRequest(models=["resnet"]))
        await anext(aiter(stream))
        silence(fleet, head)

        async def head_gone() -> list[str]:
            async for message in stream:
                for route in message.routes:
                    names = {endpoint.replica: endpoint.ray_cluster for endpoint in route.endpoints}
                    if head.name not in names:
                        return sorted(names.values())
            raise AssertionError("the stream ended")

        clusters = await asyncio.wait_for(head_gone(), timeout=10)
        assert clusters == ["c0", "c0", "c0"], "c1 left the routes whole, at once"
        stream.cancel()

        async def replacement() -> bool:
            now = await control.replicas("fed")
            return sorted(r.ray_cluster for r in now) == ["c0"] * 3 + ["c2"] * 3

        await eventually(replacement, what="c1 replaced by c2")
        c2 = [r for r in await control.replicas("fed") if r.ray_cluster == "c2"]
        assert sorted(r.role for r in c2) == [HEAD, WORKER, WORKER]
        assert all(r.node != head.node for r in c2)
        assert set((await routed(control)).values()) == {"c0"}, "c2 is not ready yet"
        await control.report(c2)

        async def switched() -> bool:
            return sorted((await routed(control)).values()) == ["c0"] * 3 + ["c2"] * 3

        await eventually(switched, what="c2 takes the traffic")
        app = await control.settled("fed", placed=6)
        assert app.replica_counts.ready == 6


async def _routed_count(control: Plane, count: int) -> bool:
    return len(await routed(control)) == count
