"""WatchRoutes: a snapshot, then each changed route whole and removed versions; resuming
from a revision; filtering by model; a compacted revision answers OUT_OF_RANGE."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from astra._gen.astra.v1 import app_service_pb2, replica_pb2
from astra._gen.astra.v1 import scheduler_service_pb2 as ss
from tests.node_agent.waiting import eventually
from tests.services.app.plane import Plane, spec

Stream = grpc.aio.UnaryStreamCall[ss.WatchRoutesRequest, ss.WatchRoutesResponse]


async def next_message(stream: Stream) -> ss.WatchRoutesResponse:
    return await asyncio.wait_for(stream.read(), timeout=10)


def endpoints(message: ss.WatchRoutesResponse) -> dict[str, int]:
    return {f"{route.model}:{route.version}": len(route.endpoints) for route in message.routes}


async def serving(
    control: Plane, app_id: str, models: list[tuple[str, str]], replicas: int = 1
) -> None:
    await control.create(app_id, spec(replicas=replicas, models=models))
    await control.settled(app_id, placed=replicas)
    await control.report(await control.replicas(app_id))


async def routed(control: Plane) -> dict[str, int]:
    response = await control.scheduler.GetRoutes(ss.GetRoutesRequest())
    return {f"{route.model}:{route.version}": len(route.endpoints) for route in response.routes}


async def test_snapshot_changes_removals_and_resume(control: Plane) -> None:
    async with control.fleet(3):
        await serving(control, "v1", [("resnet", "1"), ("bert", "1")], replicas=2)
        await serving(control, "v2", [("resnet", "2")])
        want = {"resnet:1": 2, "resnet:2": 1, "bert:1": 2}
        await eventually(lambda: _equal(routed(control), want), what="routes ready")

        stream: Stream = control.scheduler.WatchRoutes(ss.WatchRoutesRequest())
        snapshot = await next_message(stream)
        assert snapshot.snapshot and snapshot.revision > 0
        assert endpoints(snapshot) == want
        assert not snapshot.removed_routes

        first = (await control.replicas("v1"))[1]
        await control.report([first], replica_pb2.REPLICA_PHASE_DRAINING)
        changed = await next_message(stream)
        assert not changed.snapshot and changed.revision > snapshot.revision
        assert endpoints(changed) == {"resnet:1": 1, "bert:1": 1}, "both routes, in one revision"
        assert not changed.removed_routes

        await control.apps.DeleteApp(app_service_pb2.DeleteAppRequest(name="apps/v2"))
        removal = await next_message(stream)
        while not removal.removed_routes:
            removal = await next_message(stream)
        assert list(removal.removed_routes) == ["resnet:2"]
        assert not removal.routes, "resnet:1 did not change"
        stream.cancel()

        resumed: Stream = control.scheduler.WatchRoutes(
            ss.WatchRoutesRequest(start_revision=snapshot.revision + 1)
        )
        catch_up = await next_message(resumed)
        assert not catch_up.snapshot
        assert catch_up.revision >= removal.revision
        assert list(catch_up.removed_routes) == ["resnet:2"]
        assert endpoints(catch_up) == {"resnet:1": 1, "bert:1": 1}
        resumed.cancel()

        current: Stream = control.scheduler.WatchRoutes(
            ss.WatchRoutesRequest(start_revision=catch_up.revision + 1)
        )
        nothing_missed = await next_message(current)
        assert not nothing_missed.routes and not nothing_missed.removed_routes
        current.cancel()


async def test_a_stream_of_some_models_only(control: Plane) -> None:
    async with control.fleet(2):
        await serving(control, "both", [("resnet", "1"), ("bert", "1")])
        await eventually(
            lambda: _equal(routed(control), {"resnet:1": 1, "bert:1": 1}), what="routes"
        )
        stream: Stream = control.scheduler.WatchRoutes(ss.WatchRoutesRequest(models=["bert"]))
        snapshot = await next_message(stream)
        assert endpoints(snapshot) == {"bert:1": 1}
        await serving(control, "other", [("resnet", "2")])
        await serving(control, "more", [("bert", "2")])
        message = await next_message(stream)
        assert {route.model for route in message.routes} == {"bert"}
        stream.cancel()


async def test_a_compacted_revision_answers_out_of_range(control: Plane) -> None:
    async with control.fleet(1):
        await serving(control, "one", [("resnet", "1")])
        await eventually(lambda: _equal(routed(control), {"resnet:1": 1}), what="routes")
        old = (await control.scheduler.GetRoutes(ss.GetRoutesRequest())).revision
        await serving(control, "two", [("bert", "1")])
        await eventually(
            lambda: _equal(routed(control), {"resnet:1": 1, "bert:1": 1}), what="routes"
        )
        await control.store.compact(await control.store.current_revision())
        stream: Stream = control.scheduler.WatchRoutes(ss.WatchRoutesRequest(start_revision=old))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await next_message(stream)
        assert caught.value.code() is grpc.StatusCode.OUT_OF_RANGE
        for request in (
            ss.WatchRoutesRequest(start_revision=-1),
            ss.WatchRoutesRequest(models=["no/slash"]),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await next_message(control.scheduler.WatchRoutes(request))
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def _equal(found: object, want: dict[str, int]) -> bool:
    return await found == want  # type: ignore[misc]
