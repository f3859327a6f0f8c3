"""Routes from the whole control plane: READY replicas on READY nodes, weighted by
capacity and hardware; a draining or dead node's endpoints leave at once."""

from __future__ import annotations

import grpc
import pytest

from astra._gen.astra.v1 import app_pb2, common_pb2, replica_pb2, resource_service_pb2, route_pb2
from astra._gen.astra.v1 import scheduler_service_pb2 as ss
from tests.node_agent.waiting import eventually
from tests.services.app.plane import GIB, Plane, spec
from tests.services.scheduler.conftest import A10G_FACTOR

WORKER = replica_pb2.REPLICA_ROLE_WORKER
GPU_NODE = common_pb2.Resources(cpu_millis=8000, memory_bytes=32 * GIB, gpus=2)


async def routes(control: Plane, *models: str) -> dict[tuple[str, str], route_pb2.Route]:
    response = await control.scheduler.GetRoutes(ss.GetRoutesRequest(models=models))
    return {(route.model, route.version): route for route in response.routes}


async def endpoints_of(
    control: Plane, model: str, version: str = "1"
) -> dict[str, route_pb2.RouteEndpoint]:
    route = (await routes(control, model)).get((model, version))
    return {endpoint.replica: endpoint for endpoint in route.endpoints} if route else {}


async def test_routes_list_ready_replicas_with_weights_from_capacity_and_hardware(
    control: Plane,
) -> None:
    async with (
        control.fleet(2),
        control.fleet(2, prefix="gpu-", accelerator="nvidia-a10g", capacity=GPU_NODE),
    ):
        await control.create("cpu", spec(replicas=2, cpu_millis=2000, models=[("resnet", "1")]))
        gpu = spec(
            replicas=2,
            gpus=1,
            accelerators=["nvidia-a10g"],
            models=[("resnet", "2"), ("bert", "1")],
        )
        await control.create("gpu", gpu)
        await control.settled("cpu", placed=2)
        await control.settled("gpu", placed=2)

        async def placed_but_not_ready() -> bool:
            found = await routes(control)
            return set(found) == {("resnet", "1"), ("resnet", "2"), ("bert", "1")} and not any(
                route.endpoints for route in found.values()
            )

        await eventually(placed_but_not_ready, what="routes without endpoints")
        cpu_replicas, gpu_replicas = await control.replicas("cpu"), await control.replicas("gpu")
        await control.report(cpu_replicas + gpu_replicas)

        async def ready() -> bool:
            found = await routes(control)
            return all(len(route.endpoints) == 2 for route in found.values())

        await eventually(ready, what="every endpoint routed")
        found = await routes(control)
        cpu_weights = {endpoint.base_weight for endpoint in found["resnet", "1"].endpoints}
        assert cpu_weights == {2.0}, "2 cores on the CPU: factor 1"
        for key in (("resnet", "2"), ("bert", "1")):
            route = found[key]
            assert {endpoint.base_weight for endpoint in route.endpoints} == {A10G_FACTOR}
            assert {endpoint.accelerator for endpoint in route.endpoints} == {"nvidia-a10g"}
            assert {endpoint.replica for endpoint in route.endpoints} == {
                r.name for r in gpu_replicas
            }
        endpoint = found["resnet", "1"].endpoints[0]
        replica = next(r for r in cpu_replicas if r.name == endpoint.replica)
        assert endpoint.address.startswith("127.0.0.1:")
        assert (endpoint.node, endpoint.ray_cluster) == (replica.node, replica.ray_cluster)
        assert endpoint.zone == "sim-a"
        only_bert = await routes(control, "bert")
        assert set(only_bert) == {("bert", "1")}


async def two_serving(control: Plane) -> replica_pb2.Replica:
    """An app of a head and a worker on two nodes, both routed; returns the worker."""
    await control.create("ranker", spec(replicas=2, placement=app_pb2.Placement(max_per_node=1)))
    await control.settled("ranker", placed=2)
    await control.report(await control.replicas("ranker"))
    await eventually(lambda: _count(control, "resnet", 2), what="2 endpoints")
    return next(r for r in await control.replicas("ranker") if r.role == WORKER)


async def leaves_and_moves(control: Plane, worker: replica_pb2.Replica, *, within: float) -> None:
    """``worker`` leaves the route within ``within`` seconds, then is placed elsewhere."""

    async def gone() -> bool:
        return worker.name not in await endpoints_of(control, "resnet")

    await eventually(gone, timeout=within, what=f"{worker.name} out of the route")

    async def moved() -> bool:
        placed = await control.replicas("ranker")
        return len(placed) == 2 and all(other.node != worker.node for other in placed)

    await eventually(moved, what=f"{worker.name} placed again off {worker.node}")
    app = await control.settled("ranker", placed=2)
    assert app.replica_counts.ready == 1, "the head kept serving"


async def test_a_draining_node_leaves_the_routes_at_once_and_its_replicas_move(
    control: Plane,
) -> None:
    async with control.fleet(3, drain_seconds=60):
        worker = await two_serving(control)
        await control.resources.DrainNode(resource_service_pb2.DrainNodeRequest(name=worker.node))
        await leaves_and_moves(control, worker, within=1.0)


async def test_a_dead_node_leaves_the_routes_and_its_replicas_are_placed_again(
    control: Plane,
) -> None:
    async with control.fleet(3) as fleet:
        worker = await two_serving(control)
        index = fleet.index_of(worker.node)
        assert index is not None
        fleet.silence(index)
        await leaves_and_moves(control, worker, within=5.0)


async def test_get_routes_validates_model_names(control: Plane) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await control.scheduler.GetRoutes(ss.GetRoutesRequest(models=["ok", "bad/name"]))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("models[1]: ")


async def _count(control: Plane, model: str, count: int) -> bool:
    return len(await endpoints_of(control, model)) == count
