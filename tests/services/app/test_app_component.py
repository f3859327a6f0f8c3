"""The App and Scheduler services as ``astra up`` components, beside the Resource and
Node services of the same process, the API on a port chosen at start."""

from __future__ import annotations

import asyncio

from astra._gen.astra.v1 import route_pb2, scheduler_service_pb2
from astra.config import Settings
from programs.cli import COMPONENTS, LocalRuntime, run_components
from services.app import app_component
from services.node import node_service
from services.resource import resource_component
from services.scheduler import scheduler_component
from tests.node_agent.waiting import eventually
from tests.services.app.plane import Plane, spec


async def test_the_services_run_as_components_of_astra_up() -> None:
    settings = Settings.load(
        overrides={
            "store_url": "memory://",
            "api_address": "127.0.0.1:0",
            "dead_after": 2.0,
            "accelerator_factors": "cpu=1.5",
        }
    )
    runtime = LocalRuntime(settings)
    stop = asyncio.Event()
    services = (resource_component, node_service, app_component, scheduler_component)
    *before, _api_server = COMPONENTS  # services go before the API server starts listening
    assert tuple(before[-len(services) :]) == services, "astra up runs every service"
    running = asyncio.create_task(run_components(runtime, COMPONENTS, stop))
    try:
        await eventually(lambda: _listening(runtime), what="the API listening")
        control = Plane(runtime.store, runtime.api.address)
        async with control.fleet(2):
            await control.create("ranker", spec(replicas=2))
            await control.settled("ranker", placed=2)
            await control.report(await control.replicas("ranker"))

            async def routed() -> bool:
                request = scheduler_service_pb2.GetRoutesRequest(models=["resnet"])
                routes = (await control.scheduler.GetRoutes(request)).routes
                found[:] = routes
                return len(routes) == 1 and len(routes[0].endpoints) == 2

            found: list[route_pb2.Route] = []
            await eventually(routed, what="resnet routed")
            weights = {endpoint.base_weight for endpoint in found[0].endpoints}
            assert weights == {1.5}, "one core at the configured CPU factor"
        await control.channel.close()
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)


def _listening(runtime: LocalRuntime) -> bool:
    try:
        return bool(runtime.api.address)
    except RuntimeError:
        return False
