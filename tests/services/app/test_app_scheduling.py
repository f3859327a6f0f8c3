"""The App service places apps through their schedulers and reports it in their status:
simulated nodes heartbeating a real Resource service, real gRPC, the in-memory store."""

from __future__ import annotations

import contextlib

import grpc
import pytest
from google.protobuf import field_mask_pb2

from astra._gen.astra.v1 import app_pb2, common_pb2, replica_pb2
from astra._gen.astra.v1 import app_service_pb2 as aps
from scheduling import AppScheduler, ReconcileResult
from services.app._repository import AppRepository
from tests.node_agent.waiting import eventually
from tests.services.app.plane import GIB, Plane, condition, invariants, spec

TRUE, FALSE = common_pb2.CONDITION_STATUS_TRUE, common_pb2.CONDITION_STATUS_FALSE


async def test_an_app_is_placed_and_its_status_says_so(control: Plane) -> None:
    async with control.fleet(3):
        await control.create(
            "ranker", spec(replicas=4, placement=app_pb2.Placement(max_per_node=2))
        )
        app = await control.settled("ranker", placed=4)
        assert not app.reconciling
        placed = condition(app, "Placed")
        assert placed is not None and (placed.status, placed.reason) == (TRUE, "AllPlaced")
        assert placed.last_transition_time.seconds > 0
        ready = condition(app, "Ready")
        assert ready is not None and (ready.status, ready.reason) == (FALSE, "ReplicasNotReady")
        assert app.replica_counts == app_pb2.ReplicaCounts(desired=4, placed=4)
        listed = await control.replicas("ranker")
        assert len(listed) == 4
        assert {replica.role for replica in listed} == {
            replica_pb2.REPLICA_ROLE_HEAD,
            replica_pb2.REPLICA_ROLE_WORKER,
        }
        assert all(
            replica.app_generation == 1 and replica.models[0].name == "resnet" for replica in listed
        )
        per_node: dict[str, int] = {}
        for replica in listed:
            per_node[replica.node] = per_node.get(replica.node, 0) + 1
        assert max(per_node.values()) <= 2
        assert len(await invariants(control.store)) == 4


async def test_list_replicas_pages(control: Plane) -> None:
    async with control.fleet(2):
        await control.create("ranker", spec(replicas=5))
        await control.settled("ranker", placed=5)
        names = []
        token = ""
        while True:
            page = await control.apps.ListReplicas(
                aps.ListReplicasRequest(parent="apps/ranker", page_size=2, page_token=token)
            )
            assert len(page.replicas) <= 2
            names += [replica.name for replica in page.replicas]
            token = page.next_page_token
            if not token:
                break
        assert len(names) == len(set(names)) == 5
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await control.apps.ListReplicas(
                aps.ListReplicasRequest(parent="apps/other", page_token=page.next_page_token or "x")
            )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_gpus_on_a_cpu_fleet_are_a_condition_not_an_error(control: Plane) -> None:
    async with control.fleet(2):
        created = await control.create("vision", spec(replicas=2, gpus=1))
        assert created.name == "apps/vision"
        app = await control.settled("vision", placed=0)
        placed = condition(app, "Placed")
        assert placed is not None and placed.status == FALSE
        assert placed.reason == "AcceleratorUnavailable"
        assert "GPU" in placed.message and "2 of 2 replicas cannot be placed" in placed.message
        assert app.reconciling
        assert app.replica_counts.unplaceable == 2


async def test_too_few_free_gpus_is_insufficient_gpu_until_the_fleet_grows(control: Plane) -> None:
    gpu_node = common_pb2.Resources(cpu_millis=8000, memory_bytes=32 * GIB, gpus=1)
    async with control.fleet(2, prefix="gpu-", accelerator="nvidia-a10g", capacity=gpu_node):
        await control.create("vision", spec(replicas=3, gpus=1))
        app = await control.settled("vision", placed=2)
        placed = condition(app, "Placed")
        assert placed is not None and (placed.status, placed.reason) == (FALSE, "InsufficientGpu")
        assert app.replica_counts.unplaceable == 1
        async with control.fleet(
            1, prefix="gpu-more-", accelerator="nvidia-a10g", capacity=gpu_node
        ):
            app = await control.settled("vision", placed=3)
            placed = condition(app, "Placed")
            assert placed is not None and placed.status == TRUE
            assert app.replica_counts.unplaceable == 0
            assert not app.reconciling


async def test_an_update_is_acted_on_and_observed(control: Plane) -> None:
    async with control.fleet(3):
        created = await control.create("ranker", spec(replicas=4))
        await control.settled("ranker", placed=4)
        patch = app_pb2.App(name=created.name, replicas=2)
        request = aps.UpdateAppRequest(
            app=patch, update_mask=field_mask_pb2.FieldMask(paths=["replicas"])
        )
        updated = (await control.apps.UpdateApp(request)).app
        assert updated.generation == 2
        app = await control.settled("ranker", placed=2)
        assert app.observed_generation == 2
        assert len(await invariants(control.store)) == 2


async def test_delete_frees_every_allocation(control: Plane) -> None:
    async with control.fleet(2):
        created = await control.create("ranker", spec(replicas=3))
        await control.create("keeper", spec(replicas=1, models=(("keeper", "1"),)))
        await control.settled("ranker", placed=3)
        await control.settled("keeper", placed=1)
        await control.apps.DeleteApp(aps.DeleteAppRequest(name=created.name))
        remaining = await invariants(control.store)
        assert [record.app_id for record in remaining.values()] == ["keeper"]
        assert await control.store.get("/astra/v1/apps/ranker") is None


async def test_ready_replicas_make_the_app_ready(control: Plane) -> None:
    async with control.fleet(2):
        await control.create("ranker", spec(replicas=2))
        await control.settled("ranker", placed=2)
        await control.report(await control.replicas("ranker"))

        async def ready() -> bool:
            app = await control.app("ranker")
            found = condition(app, "Ready")
            return app.replica_counts.ready == 2 and found is not None and found.status == TRUE

        await eventually(ready, what="apps/ranker Ready")


async def test_replicas_placed_for_an_older_spec_keep_the_app_reconciling(control: Plane) -> None:
    async with control.fleet(2):
        created = await control.create("ranker", spec(replicas=2))
        await control.settled("ranker", placed=2)
        patch = spec(replicas=2, models=[("resnet", "2")])
        patch.name = created.name
        request = aps.UpdateAppRequest(
            app=patch, update_mask=field_mask_pb2.FieldMask(paths=["models"])
        )
        await control.apps.UpdateApp(request)
        app = await control.settled("ranker", placed=2)
        assert app.observed_generation == 2
        placed = await control.replicas("ranker")
        if all(replica.models[0].version == "1" for replica in placed):
            assert app.reconciling, "replicas still serve resnet:1"
        else:
            assert not app.reconciling


async def test_a_node_joining_while_the_app_is_found_unplaceable_gets_it_placed(
    control: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fleet grows while the reconcile that found no room is still running: its
    answer is stale, so the app is looked at again, although nothing else wakes it (the
    node holds no apps, and the status it would write is the one already stored, as for
    an app resumed from the store: here status writes are left out to get just that)."""
    assert control.app_service is not None
    view = control.app_service.host.view
    original = AppScheduler.reconcile
    grown: list[bool] = []

    async def unchanged(*_: object) -> bool:
        return False

    async with contextlib.AsyncExitStack() as fleet:

        async def reconcile_then_grow(self: AppScheduler) -> ReconcileResult:
            result = await original(self)
            if not grown:  # the first reconcile, which saw no node
                grown.append(True)
                await fleet.enter_async_context(control.fleet(1, prefix="late-"))
                await eventually(lambda: view.node("late-0") is not None, what="the node")
            return result

        monkeypatch.setattr(AppScheduler, "reconcile", reconcile_then_grow)
        monkeypatch.setattr(AppRepository, "write_status", unchanged)
        await control.create("late", spec(replicas=1))

        async def placed() -> bool:
            return [replica.node for replica in await control.replicas("late")] == ["nodes/late-0"]

        await eventually(placed, what="the replica placed on the late node")
